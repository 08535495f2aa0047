"""Per-request memory control without breaking OpenAI clients: ``X-Memproxy-*`` headers or a ``memproxy`` body
object (taken out of the body before it goes upstream). The body wins over headers; both are validated strictly and
a bad value is a 400 that changes nothing.

Headers: ``X-Memproxy-Memory: off`` (no recall, no write), ``X-Memproxy-Recall: on|off``,
``X-Memproxy-Write: on|off``, ``X-Memproxy-Top-K: <0..100>``, ``X-Memproxy-Preset: <name>``,
``X-Memproxy-Timestamp: <ISO 8601 or UNIX seconds>`` (when the exchange happened, for importing past conversations;
trusted and admin keys only, checked by the chat service).
Body: ``"memproxy": {"recall": bool, "write": bool, "top_k": int, "preset": str, "timestamp": str | number}``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from memory import PRESETS
from proxy.errors import InvalidRequestError

BODY_KEY = "memproxy"
FUTURE_TOLERANCE_S = 300.0
"""A timestamp may be this far ahead of the proxy's clock (clients' clocks drift); further is refused."""
MAX_TOP_K = 100
_SWITCH = {"on": True, "true": True, "1": True, "yes": True, "off": False, "false": False, "0": False, "no": False}


@dataclass(frozen=True, slots=True)
class MemoryControls:
    recall: bool = True
    write: bool = True
    top_k: int | None = None
    """None = the configured default."""
    preset: str | None = None
    timestamp: float | None = None
    """When the exchange happened (UNIX seconds); None = now."""


def read_controls(headers: Mapping[str, str], payload: dict[str, Any]) -> MemoryControls:
    """Reads headers, then the body object, which it removes from ``payload`` (the upstream must not see it)."""
    controls = MemoryControls()
    if (value := headers.get("x-memproxy-memory")) is not None:
        enabled = _switch(value, "X-Memproxy-Memory")
        controls = replace(controls, recall=enabled, write=enabled)
    if (value := headers.get("x-memproxy-recall")) is not None:
        controls = replace(controls, recall=_switch(value, "X-Memproxy-Recall"))
    if (value := headers.get("x-memproxy-write")) is not None:
        controls = replace(controls, write=_switch(value, "X-Memproxy-Write"))
    if (value := headers.get("x-memproxy-top-k")) is not None:
        controls = replace(controls, top_k=_top_k(value.strip(), "X-Memproxy-Top-K"))
    if (value := headers.get("x-memproxy-preset")) is not None:
        controls = replace(controls, preset=_preset(value.strip(), "X-Memproxy-Preset"))
    if (value := headers.get("x-memproxy-timestamp")) is not None:
        controls = replace(controls, timestamp=_timestamp(value.strip(), "X-Memproxy-Timestamp"))
    if BODY_KEY in payload:
        controls = _from_body(payload.pop(BODY_KEY), controls)
    return controls


def _from_body(raw: Any, controls: MemoryControls) -> MemoryControls:
    if not isinstance(raw, dict):
        raise InvalidRequestError("'memproxy' must be an object.", param=BODY_KEY)
    unknown = set(raw) - {"recall", "write", "top_k", "preset", "timestamp"}
    if unknown:
        raise InvalidRequestError(
            f"Unknown field(s) in 'memproxy': {', '.join(sorted(unknown))}.", param=f"{BODY_KEY}.{sorted(unknown)[0]}"
        )
    for name in ("recall", "write"):
        if name in raw:
            if not isinstance(raw[name], bool):
                raise InvalidRequestError(f"'memproxy.{name}' must be true or false.", param=f"{BODY_KEY}.{name}")
            controls = replace(controls, **{name: raw[name]})
    if "top_k" in raw:
        value = raw["top_k"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequestError("'memproxy.top_k' must be an integer.", param=f"{BODY_KEY}.top_k")
        controls = replace(controls, top_k=_top_k(str(value), f"{BODY_KEY}.top_k"))
    if "preset" in raw:
        if not isinstance(raw["preset"], str):
            raise InvalidRequestError("'memproxy.preset' must be a string.", param=f"{BODY_KEY}.preset")
        controls = replace(controls, preset=_preset(raw["preset"], f"{BODY_KEY}.preset"))
    if "timestamp" in raw:
        value = raw["timestamp"]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidRequestError(
                "'memproxy.timestamp' must be an ISO 8601 time or UNIX seconds.", param=f"{BODY_KEY}.timestamp"
            )
        controls = replace(controls, timestamp=_timestamp(str(value), f"{BODY_KEY}.timestamp"))
    return controls


def _switch(value: str, where: str) -> bool:
    try:
        return _SWITCH[value.strip().lower()]
    except KeyError:
        raise InvalidRequestError(f"{where} must be 'on' or 'off', not {value.strip()[:40]!r}.", param=where) from None


def _top_k(value: str, where: str) -> int:
    if not value.isdigit() or int(value) > MAX_TOP_K:
        raise InvalidRequestError(f"{where} must be an integer from 0 to {MAX_TOP_K}.", param=where)
    return int(value)


def _timestamp(value: str, where: str) -> float:
    """UNIX seconds, or an ISO 8601 time (UTC when it names no zone); not in the future."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequestError(f"{where} must be an ISO 8601 time or UNIX seconds.", param=where) from None
        seconds = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidRequestError(f"{where} must be an ISO 8601 time or UNIX seconds.", param=where)
    if seconds > time.time() + FUTURE_TOLERANCE_S:
        raise InvalidRequestError(f"{where} is in the future.", param=where)
    return seconds


def _preset(value: str, where: str) -> str:
    if value not in PRESETS:
        raise InvalidRequestError(f"{where} must be one of {', '.join(sorted(PRESETS))}.", param=where)
    return value
