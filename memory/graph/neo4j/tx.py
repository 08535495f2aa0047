"""How the Neo4j backend sends statements: the helpers every transaction function is built from. ``run`` is the
one place a statement reaches the driver, and it is always a constant of :mod:`memory.graph.neo4j.cypher`."""

from __future__ import annotations

from typing import Any, LiteralString

from neo4j import AsyncManagedTransaction, AsyncResult, AsyncSession

from memory.graph.neo4j import cypher
from memory.graph.neo4j.records import memory_from_row, scoped
from memory.models import ChangeOp, Memory, Scope, now


async def run(
    tx: AsyncManagedTransaction | AsyncSession, statement: LiteralString, parameters: dict[str, Any] | None = None
) -> AsyncResult:
    """The one place a statement is sent; ``statement`` is always a constant of :mod:`memory.graph.neo4j.cypher`."""
    return await tx.run(statement, parameters or {})


async def run_and_consume(
    tx: AsyncManagedTransaction, statement: LiteralString, parameters: dict[str, Any] | None = None
) -> None:
    await (await run(tx, statement, parameters)).consume()


async def fetch_rows(
    tx: AsyncManagedTransaction, statement: LiteralString, parameters: dict[str, Any]
) -> list[dict[str, Any]]:
    return await (await run(tx, statement, parameters)).data()


async def single_value(tx: AsyncManagedTransaction, statement: LiteralString, parameters: dict[str, Any]) -> Any:
    record = await (await run(tx, statement, parameters)).single(strict=True)
    return record[0]


async def read_memories(
    tx: AsyncManagedTransaction, scope: Scope, statement: LiteralString, extra: dict[str, Any]
) -> list[Memory]:
    """Rows of ``RETURN m {…} AS memory`` as models; ``extra`` is every parameter but the scope's."""
    return [memory_from_row(scope, row["memory"]) for row in await fetch_rows(tx, statement, scoped(scope, **extra))]


async def append_changes(tx: AsyncManagedTransaction, scope: Scope, op: ChangeOp, memory_ids: list[str]) -> None:
    """Always the last statement of a write transaction (see :mod:`memory.graph.neo4j.cypher` on the counter's lock)."""
    if memory_ids:
        changes = [{"id": memory_id, "op": op.value} for memory_id in memory_ids]
        await run_and_consume(tx, cypher.APPEND_CHANGES, scoped(scope, changes=changes, now=now()))
