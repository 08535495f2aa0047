"""The JSON of the adapters API (``/v1/adapters``). Request bodies are strict (an unknown field, a wrong type or a
value out of range is a 400 that changes nothing). Times are ISO 8601 (UTC). Neither the tenant nor the adapter's
folder on the server is ever part of a response."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, StrictStr

from proxy.memories.protocol import ErrorResponse, StrictBody

__all__ = ["ERROR_RESPONSES", "AdapterList", "AdapterObject", "ErrorResponse", "TrainRequest", "TrainingJobObject"]

MAX_EPOCHS = 50
MAX_TRAIN_EXAMPLES = 4096

AdapterStatusName = Literal["training", "ready", "failed", "retired"]
JobState = Literal["queued", "running", "ready", "failed", "error", "cancelled"]

ERROR_RESPONSES = {
    400: "Malformed request (bad JSON, wrong type, unknown field or parameter, value out of range); nothing changed.",
    401: "Missing or unknown API key.",
    403: "The key does not grant that user or tenant.",
    404: "No such adapter version or job in this scope (one of another scope looks the same), or adapters are off "
    "(code adapters_unavailable).",
    409: "The user already has a training job (code training_in_progress), or the version is not ready.",
    503: "Memory is unavailable (training reads the user's memories), or training is not configured.",
}


class AdapterObject(BaseModel):
    """One adapter version of a user."""

    object: Literal["adapter"] = "adapter"
    user: str
    version: int
    name: str = Field(description="The adapter's model name in vLLM (opaque, the same for every version).")
    base_model: str
    status: AdapterStatusName = Field(
        description="training → ready (published) or failed (error, or validation below the margin); "
        "ready → retired (replaced or retired by hand). The current adapter is the newest ready one."
    )
    metrics: dict[str, Any] = Field(
        default_factory=dict, description="Validation: ppl_reduction, general_ppl_change, base_ppl, adapter_ppl, …"
    )
    reason: str = Field("", description="Why it failed or was retired.")
    created_at: datetime
    updated_at: datetime


class AdapterList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AdapterObject] = Field(description="Every version of the user's adapter, newest first.")


class TrainingJobObject(BaseModel):
    """A training job of this proxy process (jobs are not kept across restarts; the versions are)."""

    id: str
    object: Literal["adapter.training_job"] = "adapter.training_job"
    user: str
    state: JobState = Field(
        description="queued → running → ready (published) / failed (not published: see the adapter's reason) / "
        "error / cancelled (the user's data was erased)."
    )
    step: int = Field(description="Training steps done.")
    total: int = Field(description="Training steps in all (0 until training has started).")
    eta_s: float | None = Field(None, description="Seconds left (estimate), while running.")
    error: str | None = None
    started_at: datetime
    adapter: AdapterObject | None = Field(None, description="The version it produced, once finished.")


class TrainRequest(StrictBody):
    """Train a new adapter version from the user's memories; it is published only if it validates."""

    user: StrictStr | None = Field(None, description="End user (trusted keys only; default: the key's user).")
    epochs: int | None = Field(
        None, ge=1, le=MAX_EPOCHS, description="Passes over the pairs (default MEMPROXY_ADAPTERS_TRAIN_EPOCHS)."
    )
    max_examples: int | None = Field(
        None, ge=1, le=MAX_TRAIN_EXAMPLES, description="At most this many pairs (newest, most important first)."
    )
