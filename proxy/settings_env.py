"""How the settings tree is named in the environment: every leaf setting has one ``MEMPROXY_*`` variable.

A variable's name is its section's prefix and the field's name (``chat.top_k`` → ``MEMPROXY_RECALL_TOP_K``), unless
:data:`NAMES` gives it one of its own (the names memproxy had before the tree keep working). A choice between
implementations (the graph backend, the embedder, the extractor) is a discriminated union: its tag has a variable
(``MEMPROXY_GRAPH_BACKEND``), and each implementation's fields have theirs (``MEMPROXY_NEO4J_URI``), read only when
that implementation is chosen.

The same names work as keyword arguments: ``Settings(recall_top_k=2)`` is ``Settings(chat={"top_k": 2})``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeGuard

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

PREFIX = "MEMPROXY_"

SECTIONS: Mapping[str, str] = {
    "upstream": "UPSTREAM_",
    "chat": "RECALL_",
    "limits": "LIMIT_",
    "prefill": "PREFILL_",
    "memory.graph": "GRAPH_",
    "memory.graph.neo4j": "NEO4J_",
    "memory.graph.sqlite": "SQLITE_",
    "memory.embedder": "EMBEDDING_",
    "memory.extractor": "EXTRACTOR_",
    "memory.scheduler": "SCHEDULER_",
    "adapters": "ADAPTERS_",
    "adapters.training": "ADAPTERS_TRAIN_",
    "cli": "CLI_",
}
"""A section's prefix (a section not named here adds none). A union's implementation may have its own
(``memory.graph.neo4j``); its tag keeps the union's."""

NAMES: Mapping[str, str] = {
    "upstream.default_model": "DEFAULT_MODEL",
    "upstream.connect_timeout_s": "CONNECT_TIMEOUT_S",
    "upstream.read_timeout_s": "READ_TIMEOUT_S",
    "upstream.write_timeout_s": "WRITE_TIMEOUT_S",
    "upstream.pool_timeout_s": "POOL_TIMEOUT_S",
    "upstream.max_connections": "MAX_UPSTREAM_CONNECTIONS",
    "chat.enabled": "MEMORY_ENABLED",
    "chat.layout": "PROMPT_LAYOUT",
    "chat.core_limit": "CORE_MEMORY_LIMIT",
    "chat.side_request_markers": "SIDE_REQUEST_MARKERS",
    "chat.queue_timeout_ms": "MEMORY_QUEUE_TIMEOUT_MS",
    "memory.recall_preset": "RECALL_PRESET",
    "memory.embedder.runtime": "EMBEDDER",
    "memory.embedder.query_max_tokens": "RECALL_QUERY_MAX_TOKENS",
    "memory.extractor.kind": "EXTRACTOR",
    "adapters.adapters_dir": "ADAPTERS_DIR",
    "adapters.training.min_ppl_reduction": "ADAPTERS_MIN_PPL_REDUCTION",
    "adapters.training.max_general_ppl_increase": "ADAPTERS_MAX_GENERAL_PPL_INCREASE",
}
"""Variables whose name is not their section's prefix + the field's name (without ``MEMPROXY_``)."""

NO_VARIABLE = frozenset({"memory.data_dir", "memory.tenant", "adapters.base_model"})
"""Leaves with no variable of their own: set from other settings (``proxy.settings.DERIVED_DEFAULTS``), or without
meaning for the proxy (the engine's default tenant: the proxy always names the tenant)."""


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    """``MEMPROXY_…``"""
    path: tuple[str, ...]
    """Where its value goes in the tree (a union's implementation adds no step: ``memory.graph.uri``)."""
    description: str
    default: Any
    """As the model fills it in; ``PydanticUndefined``: required."""
    choices: tuple[str, ...] = ()
    """The values it takes, where they are a closed set."""
    union: tuple[str, ...] | None = None
    """The union section it belongs to, if any."""
    tag: str | None = None
    """The implementation it is a field of (None: the union's tag itself, or no union)."""
    derived: str | None = None
    """Its default when that is another setting's value, as the settings table says it."""

    @property
    def key(self) -> str:
        """The keyword-argument form: the name without the prefix, lower case."""
        return self.name.removeprefix(PREFIX).lower()

    @property
    def loc(self) -> tuple[str, ...]:
        """Where pydantic reports an error of its value (a union's implementation is a step there)."""
        if self.union is None or self.tag is None:
            return self.path
        depth = len(self.union)
        return (*self.path[:depth], self.tag, *self.path[depth:])

    @property
    def secret(self) -> bool:
        return any(word in self.key for word in ("key", "secret", "password"))

    @property
    def shown_default(self) -> str:
        """The default as a person would write the variable ("—": none; "required" where there is none)."""
        if self.derived is not None:
            return self.derived
        value = self.default
        if value is PydanticUndefined:
            return "required"
        if value is None or value == [] or value == ():
            return "—"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, list | tuple):
            return ",".join(map(str, value))
        if isinstance(value, Path) and value.is_relative_to(Path.home()):
            return "~/" + str(value.relative_to(Path.home()))
        return str(value)


class Variables:
    """Every variable of a settings model, by name and by keyword."""

    def __init__(self, model: type[BaseModel], *, shown: Mapping[str, str] | None = None) -> None:
        """``shown``: the defaults that are other settings' values, by dotted path, as the table says them."""
        shown = shown or {}
        self.all = [replace(v, derived=shown.get(".".join(v.path))) for v in _walk(model, ())]
        self.by_key: dict[str, list[Variable]] = {}
        for variable in self.all:
            same = self.by_key.setdefault(variable.key, [])
            if same and same[0].path != variable.path:
                raise ValueError(f"{variable.name} names both {'.'.join(same[0].path)} and {'.'.join(variable.path)}")
            same.append(variable)  # one per implementation that has the field
        self._tags = {v.union: v for v in self.all if v.union is not None and v.tag is None}

    def fold(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` with every variable's keyword (``recall_top_k``) moved to its place in the tree. A field of
        an implementation that is not the chosen one is dropped (``neo4j_uri`` with the SQLite backend); any other
        key stays where it is (the model refuses what it does not know)."""
        flat = {key: value for key, value in values.items() if key in self.by_key}
        tree: dict[str, Any] = {key: _plain(value) for key, value in values.items() if key not in self.by_key}
        for key, value in flat.items():
            for variable in self.by_key[key]:
                if variable.union is None or variable.tag is None:
                    _put(tree, variable.path, value)
                elif (tag := self.chosen(variable.union, flat, tree)) == variable.tag:
                    _put(tree, self._tags[variable.union].path, tag)  # a union given as a dict names its choice
                    _put(tree, variable.path, value)
                else:
                    continue
                break
        return tree

    def chosen(self, union: tuple[str, ...], flat: Mapping[str, Any], tree: Mapping[str, Any]) -> str:
        """The tag of a union: as given by its variable, else in the tree, else its default."""
        tag = self._tags[union]
        if tag.key in flat:
            return str(flat[tag.key])
        node: Any = tree
        for step in tag.path:
            node = node.get(step) if isinstance(node, Mapping) else None
        return str(tag.default if node is None else node)

    def describe(self, error: ValidationError) -> list[str]:
        """One line per invalid setting, naming its variable and what it takes."""
        by_loc = {variable.loc: variable for variable in self.all}
        lines = []
        for item in error.errors(include_url=False):
            loc = tuple(str(part) for part in item["loc"])
            tagged = item["type"] == "union_tag_invalid"
            variable = self._tags.get(loc) if tagged else by_loc.get(loc)
            if variable is None:
                lines.append(f"{'.'.join(loc) or 'settings'}: {item['msg']}")
            elif item["type"] == "missing":
                lines.append(f"{variable.name} is required{self._because(variable)}")
            else:
                given = item.get("ctx", {}).get("tag") if tagged else item["input"]
                value = "…" if variable.secret else repr(given)
                allowed = f"; allowed values: {', '.join(variable.choices)}" if variable.choices else ""
                reason = "" if item["type"] in ("union_tag_invalid", "literal_error") else f" ({item['msg']})"
                lines.append(f"{variable.name}={value} is not valid{reason}{allowed}")
        return lines

    def _because(self, variable: Variable) -> str:
        if variable.union is None or variable.tag is None:
            return ""
        return f" when {self._tags[variable.union].name}={variable.tag}"


def _walk(
    model: type[BaseModel], path: tuple[str, ...], union: tuple[str, ...] | None = None, tag: str | None = None
) -> Iterator[Variable]:
    section = ".".join(path if tag is None else (*path, tag))
    prefix = SECTIONS.get(section, SECTIONS.get(".".join(path), ""))
    for name, field in model.model_fields.items():
        here = (*path, name)
        dotted = ".".join(here)
        if dotted in NO_VARIABLE:
            continue
        variants = _variants(field)
        annotation = field.annotation
        if variants:
            yield from _union(field, here, variants)
        elif _is_model(annotation):
            yield from _walk(annotation, here)
        else:
            own = NAMES.get(dotted)
            yield Variable(
                PREFIX + (own or prefix + name.upper()), here, field.description or "",
                field.get_default(call_default_factory=True), _literal(annotation), union=union, tag=tag,
            )  # fmt: skip


def _union(field: FieldInfo, here: tuple[str, ...], variants: list[type[BaseModel]]) -> Iterator[Variable]:
    """A union's tag, then each implementation's own fields."""
    discriminator = str(field.discriminator)
    dotted = ".".join(here)
    tags = tuple(_literal(variant.model_fields[discriminator].annotation)[0] for variant in variants)
    default = getattr(field.get_default(call_default_factory=True), discriminator, PydanticUndefined)
    described = field.description or variants[0].model_fields[discriminator].description or ""
    name = NAMES.get(f"{dotted}.{discriminator}", SECTIONS.get(dotted, "") + discriminator.upper())
    yield Variable(PREFIX + name, (*here, discriminator), described, default, tags, union=here)
    for variant, tag in zip(variants, tags, strict=True):
        for variable in _walk(variant, here, here, tag):
            if variable.path[-1] != discriminator:
                yield variable


def _variants(field: FieldInfo) -> list[type[BaseModel]]:
    if field.discriminator is None:
        return []
    return [arg for arg in typing.get_args(field.annotation) if _is_model(arg)]


def _literal(annotation: Any) -> tuple[str, ...]:
    return tuple(map(str, typing.get_args(annotation))) if typing.get_origin(annotation) is typing.Literal else ()


def _is_model(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and not isinstance(annotation, types.GenericAlias) and issubclass(
        annotation, BaseModel
    )


def _plain(value: Any) -> Any:
    """A section given as a model becomes a dict, so variables can still be folded into it."""
    return value.model_dump() if isinstance(value, BaseModel) else value


def _put(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for step in path[:-1]:
        child = _plain(node.get(step))
        node[step] = child = dict(child) if isinstance(child, Mapping) else {}
        node = child
    node[path[-1]] = value


def markdown_table(variables: Iterable[Variable]) -> str:
    """The README's table of settings, one row per variable."""
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for variable in variables:
        described = variable.description
        if variable.choices:
            described += f" One of: {', '.join(f'`{choice}`' for choice in variable.choices)}."
        if variable.tag is not None:
            described += f" (With `{variable.tag}` only.)"
        default = variable.shown_default
        plain = default in ("—", "required") or variable.derived is not None
        rows.append(f"| `{variable.name}` | {default if plain else f'`{default}`'} | {described} |")
    return "\n".join(rows)
