"""``memproxy bench chat-recall``: memory measured on what reaches the prompt, in assistant chats.

Each LoCoMo-schema conversation is replayed through a real ``memproxy serve`` over HTTP, once from each speaker's
side as the user (:mod:`proxy.bench.chat_replay`), each exchange dated with its session's time
(``X-Memproxy-Timestamp``). Once the proxy has written everything, every question with gold evidence among the
user's own turns is asked by that user in a fresh chat, and the prompt the upstream received
(:mod:`proxy.bench.replay_upstream`) is scored:

- ``evidence_in_prompt``: the share of the question's gold turns (the user's own) that a memory in the prompt comes
  from — a memory comes from a turn when its text (speaker label and clipping aside) is that turn or a clause of it;
- ``assistant_share``: the share of the injected memories that came from the assistant's answers;
- ``echoes``: questions whose top recalled memory is the user's earlier asking of them: a question itself, of about
  the same length, holding 80 % or more of the question's own words;
- ``injected_tokens_per_chat``: the tokens of memproxy's blocks in a question's prompt (estimated).

Both assistant modes by default (``--assistant replay|noisy|both``), each on a proxy and data dir of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import shutil
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from memory import estimate_tokens
from memory.bench import locomo
from proxy.bench.chat_replay import MODES, Ask, Mode, Replay, replays
from proxy.bench.processes import free_port
from proxy.bench.replay_upstream import FALLBACK_ANSWER, SCRIPT_FIELD, ReplayUpstream, RunningUpstream
from proxy.bench.stack import proxy_process, proxy_url, queue_depth, started
from proxy.chat import prompt_layout
from proxy.observability import REQUEST_ID_HEADER

ECHO_SHARE = 0.8
ECHO_LENGTH = 2.0
"""An asking of a question is at most this many times its length (in words)."""
MIN_CLAUSE_WORDS = 4
"""A memory of fewer words counts as coming from a turn only if it is the whole turn."""
CLAUSE_SHARE = 0.9
_LABEL = re.compile(r"^[^:\n]{1,40}:\s")
_WORD = re.compile(r"\w+")
DRAIN_TIMEOUT_S = 3600.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", type=Path, required=True, help="a JSON file in LoCoMo's schema")
    parser.add_argument("--assistant", choices=[*MODES, "both"], default="both", help="what the assistant answers")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--limit", type=int, default=None, help="only the first N conversations")
    parser.add_argument("--questions", type=int, default=None, help="at most N questions per user (smoke runs)")
    parser.add_argument("--upstream-url", help="a real upstream (…/v1) for the questions' answers; default: none")
    parser.add_argument("--seed", type=int, default=0, help="picks the noisy mode's texts")
    parser.add_argument("--start-timeout-s", type=float, default=300.0, help="how long the proxy may take to start")
    parser.add_argument(
        "--data-dir", type=Path, help="keep each mode's memories in DIR/<mode> (default: a temp dir, removed)"
    )
    parser.add_argument(
        "--questions-only", action="store_true",
        help="with --data-dir: ask the questions of a replay kept there before, without replaying again",
    )  # fmt: skip
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    conversations = locomo.load(args.dataset)[: args.limit]
    speakers = _speakers(args.dataset)[: len(conversations)]
    modes: Sequence[Mode] = MODES if args.assistant == "both" else (args.assistant,)
    report: dict[str, Any] = {}
    for mode in modes:
        started_at = time.perf_counter()
        chosen = list(replays(conversations, speakers, mode, args.seed))
        if args.questions is not None:
            chosen = [_fewer_asks(replay, args.questions) for replay in chosen]
        report[mode] = _run_mode(chosen, args, mode) | {"seconds": round(time.perf_counter() - started_at, 1)}
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _run_mode(chosen: list[Replay], args: argparse.Namespace, mode: Mode) -> dict[str, Any]:
    """Replay into a data dir (a proxy of its own), then ask the questions on a copy of it (a second proxy): with
    ``--data-dir`` the replayed memories stay as they were, for ``--questions-only`` runs."""
    with tempfile.TemporaryDirectory(prefix="memproxy-chat-recall-") as tmp_name:
        tmp = Path(tmp_name)
        kept = args.data_dir / mode if args.data_dir else tmp
        replayed, asked = kept / "replayed", kept / "asked"
        statuses: Counter[str] = Counter()
        if args.questions_only:
            if not (replayed / "graph.sqlite3").exists():
                raise SystemExit(f"--questions-only: no replay kept in {replayed}")
        else:
            shutil.rmtree(replayed, ignore_errors=True)
            statuses += _with_proxy(replayed, tmp, args, lambda url, upstream: _replay(url, replayed, chosen))
        shutil.rmtree(asked, ignore_errors=True)
        shutil.copytree(replayed, asked)
        scores = Scores()
        statuses += _with_proxy(asked, tmp, args, lambda url, upstream: _ask(url, chosen, upstream, scores))
    return scores.report() | {"exchanges": sum(len(r.exchanges) for r in chosen), "memory_statuses": dict(statuses)}


def _with_proxy(
    data_dir: Path, tmp: Path, args: argparse.Namespace, work: Callable[[str, ReplayUpstream], Awaitable[Counter[str]]]
) -> Counter[str]:
    upstream = ReplayUpstream(args.upstream_url)
    with RunningUpstream(upstream, free_port()) as running:
        proxy = proxy_process(running.url, data_dir, tmp / "proxy.log", memory=True,
                              start_timeout_s=args.start_timeout_s)  # fmt: skip
        started(proxy)
        try:
            return asyncio.run(work(proxy_url(proxy), upstream))
        finally:
            proxy.stop()


async def _replay(base_url: str, data_dir: Path, chosen: list[Replay]) -> Counter[str]:
    """Every exchange of every replay, in order, dated; returns once the proxy has applied all its writes."""
    statuses: Counter[str] = Counter()
    async with _client(base_url) as client:
        for replay in chosen:
            for exchange in replay.exchanges:
                body = {
                    "model": "replay-model",
                    "user": replay.user,
                    "messages": [*exchange.history, {"role": "user", "content": exchange.message}],
                    SCRIPT_FIELD: exchange.answer,
                }
                headers = {"X-Memproxy-Timestamp": _iso(exchange.timestamp)} if exchange.timestamp else {}
                statuses[await _post(client, body, headers)] += 1
    await _drained(data_dir)
    return statuses


async def _ask(base_url: str, chosen: list[Replay], upstream: ReplayUpstream, scores: Scores) -> Counter[str]:
    """Every question, each in a fresh chat, scored on the prompt the upstream received."""
    statuses: Counter[str] = Counter()
    async with _client(base_url) as client:
        for replay in chosen:
            for number, ask in enumerate(replay.asks):
                request_id = f"ask-{replay.user}-{number}"
                body = {"model": "replay-model", "user": ask.user, "messages": [{"role": "user", "content": ask.question}]}
                if upstream.forward_url is None:
                    body[SCRIPT_FIELD] = _question_answer(replay, number)
                statuses[await _post(client, body, {REQUEST_ID_HEADER: request_id})] += 1
                scores.add(ask, upstream.prompts.get(request_id, []), replay)
    return statuses


def _client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url + "/", timeout=600, trust_env=False)


async def _post(client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str]) -> str:
    response = await client.post("chat/completions", json=body, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"the proxy answered {response.status_code}: {response.text[:300]}")
    return response.headers.get("x-memproxy-memory", "missing")


async def _drained(data_dir: Path) -> None:
    """Wait until the proxy has applied every queued exchange (the questions come after the conversations)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while await queue_depth(data_dir) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the proxy's write queue did not drain")
        await asyncio.sleep(0.5)


def _question_answer(replay: Replay, number: int) -> str:
    """What the assistant answers a question with: in replay mode a neutral sentence, in noisy mode one of its
    invented answers."""
    if replay.mode == "replay" or not replay.answers:
        return FALLBACK_ANSWER
    return replay.answers[number % len(replay.answers)]


@dataclass
class Scores:
    evidence: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    injected: int = 0
    from_assistant: int = 0
    echoes: int = 0
    tokens: list[int] = field(default_factory=list)

    def add(self, ask: Ask, prompt: list[dict[str, Any]], replay: Replay) -> None:
        text = "\n".join(prompt_layout.message_text(message) for message in prompt)
        shown = prompt_layout.shown_memories(text)
        memories = [_plain(memory) for _, memory in shown]
        found = sum(1 for turn in ask.gold if any(_comes_from(memory, _norm(turn)) for memory in memories))
        self.evidence[ask.category].append(found / len(ask.gold))
        said, answered = "\x00".join(map(_norm, replay.turns)), "\x00".join(map(_norm, replay.answers))
        self.injected += len(shown)
        self.from_assistant += sum(1 for _, memory in shown if _is_assistants(memory, said, answered))
        recalled = [memory for kind, memory in shown if kind == "recalled"]
        self.echoes += bool(recalled) and _echoes(recalled[0], ask.question)
        self.tokens.append(sum(estimate_tokens(block) for block in prompt_layout.blocks_of(text)))

    def report(self) -> dict[str, Any]:
        every = [value for values in self.evidence.values() for value in values]
        return {
            "evidence_in_prompt": _mean(every),
            "assistant_share": round(self.from_assistant / self.injected, 4) if self.injected else 0.0,
            "echoes": self.echoes,
            "injected_tokens_per_chat": round(statistics.fmean(self.tokens), 1) if self.tokens else 0.0,
            "by_category": {
                str(category): {"evidence_in_prompt": _mean(values), "n": len(values)}
                for category, values in sorted(self.evidence.items())
            },
            "questions": len(every),
        }


def _plain(memory: str) -> str:
    """A memory as the user's words: without a speaker label and the clipping mark, normalised."""
    return _norm(_LABEL.sub("", memory, count=1).removesuffix("…"))


def _norm(text: str) -> str:
    return " ".join(text.casefold().replace("’", "'").split())


def _comes_from(memory: str, turn: str) -> bool:
    """The memory is the turn, holds it, or is a part of it: a clause, or the turn clipped (at least
    ``MIN_CLAUSE_WORDS`` words, nearly all of them the turn's; the extractor may drop the "and" it split at)."""
    if not memory:
        return False
    if memory == turn or turn in memory:
        return True
    words = _WORD.findall(memory)
    if len(words) < MIN_CLAUSE_WORDS:
        return False
    said = set(_WORD.findall(turn))
    return sum(word in said for word in words) >= CLAUSE_SHARE * len(words) and words[0] in said


def _is_assistants(memory: str, said: str, answered: str) -> bool:
    label = memory.split(":", 1)[0].casefold() if ":" in memory[:41] else ""
    if label in ("assistant", "user"):
        return label == "assistant"
    plain = _plain(memory)
    return plain in answered and plain not in said


def _echoes(memory: str, question: str) -> bool:
    """The memory is an asking of the question: itself a question, of about its length, holding nearly all of its
    words (a statement that holds them is an answer)."""
    said = _LABEL.sub("", memory, count=1).removesuffix("…").strip()
    asked, words = set(_WORD.findall(question.casefold())), _WORD.findall(said.casefold())
    if not asked or not said.endswith(("?", "？")) or len(words) > ECHO_LENGTH * len(asked):
        return False
    return len(asked.intersection(words)) / len(asked) >= ECHO_SHARE


def _mean(values: list[float]) -> float:
    return round(statistics.fmean(values), 4) if values else 0.0


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _speakers(path: Path) -> list[tuple[str, str]]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [(str(s["conversation"]["speaker_a"]), str(s["conversation"]["speaker_b"])) for s in data]


def _fewer_asks(replay: Replay, most: int) -> Replay:
    return dataclasses.replace(replay, asks=replay.asks[:most])


def format_report(report: dict[str, Any]) -> str:
    lines = []
    for mode, row in report.items():
        lines.append(
            f"{mode}: evidence in prompt {row['evidence_in_prompt']:.3f} over {row['questions']} questions; "
            f"assistant share {row['assistant_share']:.1%}; echoes {row['echoes']}; "
            f"{row['injected_tokens_per_chat']} injected tokens per chat; {row['exchanges']} exchanges; "
            f"{row['seconds']} s"
        )
        for category, values in row["by_category"].items():
            name = locomo.CATEGORY_NAMES.get(int(category), "")
            lines.append(f"  {category} {name:<12} {values['evidence_in_prompt']:.3f}  (n={values['n']})")
    return "\n".join(lines)
