"""The Neo4j backend's settings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class Neo4jGraphConfig(BaseModel):
    """The graph store on a Neo4j 5+ server (Community Edition is enough)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Literal["neo4j"] = Field(description="The graph store on a Neo4j server, through the official driver.")
    uri: str = Field(description="The server's URI, e.g. neo4j://host:7687 (a cluster) or bolt://host:7687.")
    user: str = Field("neo4j", description="The user the store signs in as.")
    password: SecretStr | None = Field(None, description="That user's password; None: an empty one.")
    database: str = Field("neo4j", description="The database that holds the graph (one server may hold several).")
