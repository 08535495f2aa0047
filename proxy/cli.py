"""The ``memproxy`` command: ``serve`` runs the proxy; ``bench`` runs the benchmarks; ``memories`` talks to the
memory API of a running proxy."""

from __future__ import annotations

import argparse
import sys

from proxy import __version__
from proxy.settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except SettingsError as exc:
        for line in str(exc).splitlines():
            print(f"memproxy: invalid setting: {line}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memproxy",
        description="OpenAI-compatible proxy that gives any chat model long-term memory. "
        "Every setting is also read from MEMPROXY_* environment variables.",
    )
    parser.add_argument("--version", action="version", version=f"memproxy {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the proxy (OpenAI-compatible API on --host:--port)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1; MEMPROXY_HOST)")
    serve.add_argument("--port", type=int, help="listen port (default 8080; MEMPROXY_PORT)")
    serve.add_argument("--upstream-url", help="OpenAI-compatible upstream base URL incl. /v1 (MEMPROXY_UPSTREAM_URL)")
    serve.add_argument("--default-model", help="model used when a request names none (MEMPROXY_DEFAULT_MODEL)")
    serve.add_argument("--log-level", help="debug, info, warning, error (MEMPROXY_LOG_LEVEL)")
    serve.add_argument("--access-log", action="store_true", help="log every request line")
    serve.set_defaults(handler=_serve)

    reembed = commands.add_parser(
        "reembed", help="embed every memory again with the configured embedder (after changing it; resumable)"
    )
    reembed.set_defaults(handler=_reembed)
    settings = commands.add_parser("settings", help="every MEMPROXY_* variable: its default and what it does")
    settings.add_argument("--markdown", action="store_true", help="as the README's table")
    settings.set_defaults(handler=_settings)

    bench = commands.add_parser("bench", help="run a benchmark")
    benches = bench.add_subparsers(title="benchmarks", metavar="BENCH")
    from proxy.bench.overhead import add_arguments as add_overhead_arguments

    overhead = benches.add_parser("overhead", help="latency the proxy adds over calling the upstream directly")
    add_overhead_arguments(overhead)
    from proxy.bench.throughput import add_arguments as add_throughput_arguments

    throughput = benches.add_parser("throughput", help="requests/s under concurrency, memory on vs off")
    add_throughput_arguments(throughput)
    from memory.bench.recall_quality import add_arguments as add_recall_arguments

    recall = benches.add_parser("recall", help="recall@k of gold evidence turns on a LoCoMo-schema data set")
    add_recall_arguments(recall)
    from memory.bench.latency import add_arguments as add_latency_arguments

    latency = benches.add_parser("latency", help="recall() p50/p95 for users of 1k/10k/100k memories, 1M in store")
    add_latency_arguments(latency)
    from proxy.bench.chat_recall import add_arguments as add_chat_recall_arguments

    chat_recall = benches.add_parser(
        "chat-recall", help="what reaches the prompt: a LoCoMo-schema file replayed as assistant chats through the proxy"
    )
    add_chat_recall_arguments(chat_recall)
    from proxy.bench.prefix_cache import add_arguments as add_prefix_cache_arguments

    prefix_cache = benches.add_parser("prefix-cache", help="vLLM prefix-cache hits per turn: memproxy vs naive layout")
    add_prefix_cache_arguments(prefix_cache)
    from proxy.bench.adapters import add_arguments as add_adapters_bench_arguments

    adapters_bench = benches.add_parser("adapters", help="per-user LoRA: perplexity, training time, load, routing")
    add_adapters_bench_arguments(adapters_bench)
    from proxy.bench.reliability import add_arguments as add_reliability_arguments

    reliability = benches.add_parser(
        "reliability", help="kill -9 after answers, fuzzing from the OpenAPI document, load, injected faults"
    )
    add_reliability_arguments(reliability)
    from adapters.cli import add_arguments as add_adapters_arguments
    from proxy.adapter_gateway import adapters_cli_config

    add_adapters_arguments(commands, adapters_cli_config)
    from proxy.memories.cli import add_arguments as add_memories_arguments

    add_memories_arguments(commands)
    return parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from proxy.app import create_app
    from proxy.observability import configure_logging

    overrides = {
        key: value
        for key, value in {
            "host": args.host,
            "port": args.port,
            "upstream_url": args.upstream_url,
            "default_model": args.default_model,
            "log_level": args.log_level,
        }.items()
        if value is not None
    }
    settings = load_settings(**overrides)
    configure_logging(settings.server.log_level, settings.server.log_format)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.server.log_level,
        log_config=None,  # uvicorn's loggers go through ours (text or JSON, with the request id)
        access_log=args.access_log,
        timeout_graceful_shutdown=5,
    )
    return 0


def _reembed(args: argparse.Namespace) -> int:
    """With the proxy stopped: the store's memories embedded with the configured embedder, with a progress bar."""
    import asyncio

    from tqdm import tqdm

    from memory import reembed

    settings = load_settings()
    with tqdm(unit="memories", desc="re-embedding", disable=None) as bar:

        def show(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        count = asyncio.run(reembed(settings.memory, show))
    print(f"re-embedded {count} memories with {settings.memory.embedder.runtime}")
    return 0


def _settings(args: argparse.Namespace) -> int:
    from proxy.settings import VARIABLES
    from proxy.settings_env import markdown_table

    load_settings()  # the values set now must be valid (else one line each, and exit 2)
    if args.markdown:
        print(markdown_table(VARIABLES.all))
    else:
        for variable in VARIABLES.all:
            print(f"{variable.name:<44} {variable.shown_default}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
