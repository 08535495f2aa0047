"""The embedded backend's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_FILE = "graph.sqlite3"
"""The database's file name in the data directory, unless ``path`` names another."""


class SqliteGraphConfig(BaseModel):
    """The graph store in one SQLite file, no server (the default backend)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Literal["sqlite"] = Field("sqlite", description="The embedded graph store: SQLite, no server.")
    path: Path | None = Field(
        None, description=f"The database file (created with its folder if missing); None: <data_dir>/{DEFAULT_FILE}."
    )

    def file(self, data_dir: Path) -> Path:
        """The database file for a store whose data directory is ``data_dir``."""
        return self.path or data_dir / DEFAULT_FILE
