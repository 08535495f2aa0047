"""The JSON of the memory REST API (``/v1/memories``). Request bodies are strict: an unknown field, a wrong type or
a value out of range is a 400 and changes nothing. Times are ISO 8601 (UTC) out; in, ISO 8601 or UNIX seconds.
Embeddings and the tenant are never part of a response."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, WithJsonSchema, field_validator

from memory import EXPORT_EARLIEST_S, EXPORT_LATEST_S
from proxy.chat.protocol import Count
from proxy.identity import ID_SCHEMA

Kind = Literal["fact", "episode", "preference", "profile"]

MAX_CONTENT_CHARS = 20_000
NOT_BLANK: dict[str, Any] = {"pattern": r"\S"}
"""A text field holds more than blanks, for the OpenAPI document (checked by ``StrictBody._not_blank``)."""
LIST_LIMIT_MAX = 200
GRAPH_LIMIT_MAX = 1000
TOP_K_MAX = 100


class StrictBody(BaseModel):
    """A request body: unknown fields and loose types are refused; text fields must hold more than blanks."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("content", "query", "text", check_fields=False)
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value


# --- responses -------------------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(BaseModel):
    """The OpenAI error shape every failure answers with."""

    error: ErrorDetail


ERROR_RESPONSES = {
    400: "Malformed request (bad JSON, wrong type, unknown field or parameter, value out of range); nothing changed.",
    401: "Missing or unknown API key.",
    403: "The key does not grant that user or tenant.",
    404: "No such memory in this scope (an id of another scope looks the same).",
    409: "The memory was revised already (PATCH text on an old version).",
    503: "Memory is off or failed to start (code memory_unavailable).",
}


# --- memories ---------------------------------------------------------------------------------------------------


class MemoryObject(BaseModel):
    """One memory as the API shows it."""

    id: str
    object: Literal["memory"] = "memory"
    user: str
    text: str
    kind: Kind
    importance: float
    core: bool = Field(description="In the user's core memory (shown to the model in every chat).")
    pinned: bool = Field(description="Put into core memory by the user (never demoted).")
    active: bool = Field(description="Neither superseded nor expired.")
    created_at: datetime
    event_time: datetime | None = None
    last_used_at: datetime | None = None
    use_count: int = 0
    expires_at: datetime | None = None
    source_ids: list[str] = Field(default_factory=list, description="Provenance: the messages it came from.")
    superseded_by: str | None = Field(None, description="The id of the newer version, if it was revised.")
    entities: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Free-form (category, …); the engine's own bookkeeping keys are not shown."
    )


class MemoryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[MemoryObject]
    next_cursor: str | None = Field(
        None, description="Pass as ?cursor= for the next page; null at the end. A page may hold fewer than limit."
    )


class ScoredMemory(MemoryObject):
    score: float = Field(description="Recall score (higher is more relevant).")


class SearchResults(BaseModel):
    object: Literal["list"] = "list"
    data: list[ScoredMemory]


class MemoryHistory(BaseModel):
    object: Literal["list"] = "list"
    data: list[MemoryObject] = Field(description="The versions of the memory, oldest first.")


class DeletedMemory(BaseModel):
    id: str
    object: Literal["memory.deleted"] = "memory.deleted"
    deleted: bool = True


class DeletedUser(BaseModel):
    object: Literal["memory.user_deleted"] = "memory.user_deleted"
    user: str
    deleted: int = Field(description="Memories removed (queued writes, entities, edges and indexes go too).")
    adapters_deleted: int = Field(
        0, description="Versions of the user's LoRA adapter removed (files, registry, the model server's copy)."
    )


class GraphNode(BaseModel):
    id: str = Field(description="A memory id, or 'entity:<name>' for an entity.")
    type: Literal["memory", "entity"]
    label: str
    kind: str | None = Field(None, description="Memory kind, or entity type.")
    importance: float | None = None
    active: bool | None = None


class GraphEdge(BaseModel):
    source: str
    target: str
    type: Literal["MENTIONS", "RELATED_TO", "LEADS_TO", "SUPERSEDES"] | str
    strength: float = 1.0


class MemoryGraph(BaseModel):
    object: Literal["memory.graph"] = "memory.graph"
    user: str
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    truncated: bool = Field(description="The user has more memories than the limit; the newest are shown.")


class ImportResult(BaseModel):
    object: Literal["memory.import"] = "memory.import"
    user: str
    imported: int


# --- requests --------------------------------------------------------------------------------------------------


class CreateMemoryRequest(StrictBody):
    content: StrictStr = Field(..., min_length=1, max_length=MAX_CONTENT_CHARS, json_schema_extra=NOT_BLANK)
    user: StrictStr | None = Field(
        None, description="End user (trusted keys only; default: the key's user).", json_schema_extra=ID_SCHEMA
    )
    importance: float = Field(0.5, ge=0.0, le=1.0, allow_inf_nan=False)
    category: StrictStr | None = Field(None, min_length=1, max_length=256)
    metadata: dict[str, Any] | None = None
    kind: Kind = "fact"
    event_time: datetime | None = Field(None, strict=False, description="When it happened, if not now.")


class SearchRequest(StrictBody):
    query: StrictStr = Field(..., min_length=1, max_length=MAX_CONTENT_CHARS, json_schema_extra=NOT_BLANK)
    user: StrictStr | None = Field(None, json_schema_extra=ID_SCHEMA)
    top_k: Count = Field(10, ge=1, le=TOP_K_MAX)
    preset: Literal["balanced", "precise", "broad", "fast"] | None = None


def _update_schema(schema: dict[str, Any]) -> None:
    """As enforced: at least one field, and only ``retention_period`` may be null (the others are absent or set)."""
    schema["minProperties"] = 1
    for name in ("text", "importance", "pinned", "metadata"):
        field = schema["properties"][name]
        choices = [choice for choice in field.pop("anyOf", []) if choice.get("type") != "null"]
        field.pop("default", None)
        if len(choices) == 1:
            field.update(choices[0])


class UpdateMemoryRequest(StrictBody):
    """Only the fields sent change. ``text`` stores a new version that supersedes this one (the answer is the new
    version; history keeps both); the other fields change this memory in place."""

    model_config = ConfigDict(json_schema_extra=_update_schema)

    text: StrictStr | None = Field(None, min_length=1, max_length=MAX_CONTENT_CHARS, json_schema_extra=NOT_BLANK)
    importance: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    retention_period: Annotated[float, Field(gt=0, allow_inf_nan=False)] | Literal["short_term", "long_term"] | None = (
        Field(None, description="How long it is kept from now: seconds, 'short_term' or 'long_term'; null: forever.")
    )
    pinned: StrictBool | None = Field(None, description="true: into core memory for good; false: out of it.")
    metadata: dict[str, Any] | None = Field(None, description="A JSON merge patch (RFC 7396): null removes a key.")


_TIME = {"anyOf": [{"type": "number", "minimum": EXPORT_EARLIEST_S, "maximum": EXPORT_LATEST_S},
                   {"type": "string", "format": "date-time"}]}  # fmt: skip
_TIME_OR_NULL = {"anyOf": [*_TIME["anyOf"], {"type": "null"}]}
_TEXT = {"type": "string", "minLength": 1} | NOT_BLANK
EXPORTED_MEMORY: dict[str, Any] = {
    "type": "object",
    "required": ["id", "text", "created_at"],
    "properties": {
        "id": _TEXT, "text": _TEXT, "created_at": _TIME, "kind": {"enum": list(Kind.__args__)},  # type: ignore[attr-defined]
        "importance": {"type": "number", "minimum": 0, "maximum": 1},
        "event_time": _TIME_OR_NULL, "last_used_at": _TIME_OR_NULL, "expires_at": _TIME_OR_NULL,
        "use_count": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
        "source_ids": {"type": "array", "items": {"type": "string"}},
        "superseded_by": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "entities": {"type": "array", "items": {"type": "string"}}, "metadata": {"type": "object"},
    },
}  # fmt: skip
"""What the import reads of a memory (:func:`memory.graph.export_format.import_memory`), for the document."""
EXPORTED_ENTITY: dict[str, Any] = {
    "type": "object", "required": ["name"],
    "properties": {"name": _TEXT, "type": {"type": "string"}, "display_name": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
}  # fmt: skip
EXPORTED_RELATIONSHIP: dict[str, Any] = {
    "type": "object", "required": ["source_id", "target_id", "type"],
    "properties": {"source_id": _TEXT, "target_id": _TEXT, "type": {"type": "string", "minLength": 1},
                   "strength": {"type": "number"}},
    "description": "Both ends must be memories of the same export.",
}  # fmt: skip


class ImportRequest(StrictBody):
    """The JSON of ``GET /v1/memories/export`` (the export format of every store). The user it goes to is named
    by ``?user=``: an export holds no scope. Each item is read as the export writes it (documented here; checked,
    every item before anything is written, by the import itself)."""

    object: Literal["memory.export"] | None = None
    memories: list[Annotated[dict[str, Any], WithJsonSchema(EXPORTED_MEMORY)]]
    entities: list[Annotated[dict[str, Any], WithJsonSchema(EXPORTED_ENTITY)]] = Field(default_factory=list)
    relationships: list[Annotated[dict[str, Any], WithJsonSchema(EXPORTED_RELATIONSHIP)]] = Field(
        default_factory=list
    )


class MemoryExport(BaseModel):
    """One user's memories, entities and relationships (no embeddings, no scope): ``POST /v1/memories/import``
    takes it back, into any user and any store."""

    object: Literal["memory.export"] = "memory.export"
    memories: list[dict[str, Any]]
    entities: list[dict[str, Any]]
    relationships: list[dict[str, Any]]
