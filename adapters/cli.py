"""``memproxy adapters …``: train, list, show and retire users' LoRA adapters (on this machine's data dir).

The proxy's CLI mounts these sub-commands and injects how to build the configuration (from its settings), so this
module reads no environment itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from adapters.config import AdaptersConfig
from adapters.jobs import NothingToTrain, train_and_publish
from adapters.registry import AdapterRegistry, AdapterStatus, AdapterVersion
from memory import MemoryConfig, MemoryReader, Scope

ConfigFactory = Callable[[argparse.Namespace], tuple[AdaptersConfig, MemoryConfig]]
"""Builds (adapters config, memory config) from the parsed arguments (and the environment, in the caller)."""


def add_arguments(commands: Any, make_config: ConfigFactory) -> None:
    adapters = commands.add_parser("adapters", help="per-user LoRA adapters: train, list, show, retire")
    actions = adapters.add_subparsers(title="actions", metavar="ACTION")

    def scoped(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument("--user", required=True, help="the end user")
        parser.add_argument("--tenant", default="default", help="the tenant (default: default)")
        return parser

    train = scoped("train", "train a new adapter version from the user's memories; publish it if it validates")
    train.add_argument("--epochs", type=int, help="training epochs (MEMPROXY_ADAPTERS_TRAIN_EPOCHS)")
    train.add_argument("--json", action="store_true", help="print the version as JSON")
    train.set_defaults(handler=lambda args: _run(_train(args, *make_config(args))))

    listing = actions.add_parser("list", help="every user's newest adapter version")
    listing.add_argument("--tenant", help="only this tenant")
    listing.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    listing.set_defaults(handler=lambda args: _run(_list(args, make_config(args)[0])))

    show = scoped("show", "all versions of a user's adapter, with their validation metrics")
    show.set_defaults(handler=lambda args: _run(_show(args, make_config(args)[0])))

    retire = scoped("retire", "stop using a user's adapter (its newest ready version, or --version)")
    retire.add_argument("--version", type=int, help="retire this version only")
    retire.set_defaults(handler=lambda args: _run(_retire(args, make_config(args)[0])))


def _run(coroutine: Any) -> int:
    return asyncio.run(coroutine)


async def _train(args: argparse.Namespace, config: AdaptersConfig, memory: MemoryConfig) -> int:
    from tqdm import tqdm

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.epochs:
        config = config.model_copy(update={"training": config.training.model_copy(update={"epochs": args.epochs})})
    # The store only (a running proxy owns the queue and the indexes of this data dir).
    memories_of = await MemoryReader.open(memory)
    bar = tqdm(total=0, desc="training", unit="step", file=sys.stderr)

    def progress(step: int, total: int) -> None:
        bar.total = total
        bar.update(step - bar.n)

    try:
        version = await train_and_publish(
            config, AdapterRegistry(config.registry_path), memories_of, Scope(args.tenant, args.user), progress
        )
    except NothingToTrain as exc:
        print(f"nothing to train: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
        await memories_of.close()
    if args.json:
        print(json.dumps(version.to_dict(), indent=2))
    else:
        print(_describe(version))
    return 0 if version.status == AdapterStatus.READY else 1


async def _list(args: argparse.Namespace, config: AdaptersConfig) -> int:
    versions = await AdapterRegistry(config.registry_path).list_current(args.tenant)
    for version in versions:
        print(json.dumps(version.to_dict()) if args.json else _describe(version))
    if not versions and not args.json:
        print("no adapters", file=sys.stderr)
    return 0


async def _show(args: argparse.Namespace, config: AdaptersConfig) -> int:
    versions = await AdapterRegistry(config.registry_path).versions(Scope(args.tenant, args.user))
    if not versions:
        print(f"no adapter for {args.tenant}/{args.user}", file=sys.stderr)
        return 1
    print(json.dumps([version.to_dict() for version in versions], indent=2))
    return 0


async def _retire(args: argparse.Namespace, config: AdaptersConfig) -> int:
    retired = await AdapterRegistry(config.registry_path).retire(Scope(args.tenant, args.user), args.version)
    if not retired:
        print("nothing to retire", file=sys.stderr)
        return 1
    print(f"retired version(s) {', '.join(map(str, retired))} of {args.tenant}/{args.user}")
    return 0


def _describe(version: AdapterVersion) -> str:
    metrics = version.metrics
    quality = (
        f" ppl -{metrics['ppl_reduction']:.0%} general {metrics['general_ppl_change']:+.1%}"
        if "ppl_reduction" in metrics else ""
    )
    reason = f" ({version.reason})" if version.reason else ""
    return (
        f"{version.scope.tenant}/{version.scope.user}  {version.name} v{version.version}  "
        f"{version.status.value}{reason}{quality}"
    )
