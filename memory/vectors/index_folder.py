"""The vector index on disk: ``manifest.json`` plus one self-checking file per partition, all written atomically.

Layout of a folder::

    manifest.json              {"format", "dim", "embedder", "applied_seq", "partitions": [{"tenant", "user", "count"}]}
    partitions/<sha256(scope)>.part

A partition file is ``MAGIC | u32 header length | header (JSON: scope, dim, trained_on, section sizes, CRC-32 of
the payload) | payload``, the payload being the serialised FAISS index, the id lengths (int32, -1 for a removed
label) and the UTF-8 ids. Opening checks each listed file's magic, header and length (cheap); loading a partition
verifies its checksum. Anything wrong raises :class:`IndexLoadError`: the index is derived data, rebuilt from the
graph store.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import struct
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import faiss
import numpy as np

from memory.atomic_file import remove_durably, remove_stray_temps, write_atomic
from memory.models import Scope
from memory.vectors.partition import Partition

FORMAT = 1
MANIFEST = "manifest.json"
_MAGIC = b"MPVPART1"
_SUFFIX = ".part"

log = logging.getLogger(__name__)


class IndexLoadError(Exception):
    """The saved index cannot be used (damaged, missing or from another dimension / embedder): rebuild it."""


@dataclass(slots=True)
class Manifest:
    dim: int
    embedder: str
    applied_seq: int
    counts: dict[Scope, int] = field(default_factory=dict)


class IndexFolder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._parts = path / "partitions"

    def open(self, *, dim: int, embedder: str, fresh: bool) -> Manifest | None:
        """The saved manifest, checked against ``dim`` / ``embedder`` and its partition files; None if there is
        none (or ``fresh``: then everything saved is discarded). Clears what a crash may have left behind."""
        self._parts.mkdir(parents=True, exist_ok=True)
        remove_stray_temps(self.path)
        remove_stray_temps(self._parts)
        manifest_file = self.path / MANIFEST
        if fresh:
            manifest_file.unlink(missing_ok=True)
        manifest = self._read_manifest(dim, embedder) if manifest_file.exists() else None
        listed = set() if manifest is None else {self._file(scope).name for scope in manifest.counts}
        for file in self._parts.glob(f"*{_SUFFIX}"):
            # Written when evicted after the last save, for a scope that save did not list: the change log after
            # the manifest's applied_seq recreates it.
            if file.name not in listed:
                file.unlink()
        return manifest

    def write_manifest(self, manifest: Manifest) -> None:
        data = json.dumps({
            "format": FORMAT,
            "dim": manifest.dim,
            "embedder": manifest.embedder,
            "applied_seq": manifest.applied_seq,
            "partitions": [{"tenant": s.tenant, "user": s.user, "count": c} for s, c in manifest.counts.items()],
        }, separators=(",", ":")).encode()  # fmt: skip
        write_atomic(self.path / MANIFEST, lambda handle: handle.write(data))

    def write_partition(self, scope: Scope, partition: Partition) -> None:
        write_atomic(self._file(scope), lambda handle: _write_partition(handle, scope, partition))

    def read_partition(self, scope: Scope, dim: int) -> Partition:
        file = self._file(scope)
        try:
            stored_scope, partition = _read_partition(file.read_bytes(), dim)
        except (OSError, _Corrupt) as exc:
            raise IndexLoadError(f"vector partition {file.name} of scope {scope.key!r}: {exc}") from exc
        if stored_scope != scope:
            raise IndexLoadError(f"vector partition {file.name} holds scope {stored_scope.key!r}, not {scope.key!r}")
        return partition

    def remove_partition(self, scope: Scope) -> None:
        remove_durably(self._file(scope))

    def _file(self, scope: Scope) -> Path:
        return self._parts / f"{hashlib.sha256(scope.key.encode()).hexdigest()[:32]}{_SUFFIX}"

    def _read_manifest(self, dim: int, embedder: str) -> Manifest:
        where = f"vector index at {self.path}"
        try:
            raw = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
            manifest = Manifest(
                dim=int(raw["dim"]),
                embedder=str(raw.get("embedder", "")),
                applied_seq=int(raw["applied_seq"]),
                counts={Scope(p["tenant"], p["user"]): int(p["count"]) for p in raw["partitions"]},
            )
            format_ = raw.get("format")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexLoadError(f"{where}: unreadable manifest ({exc})") from exc
        if format_ != FORMAT:
            raise IndexLoadError(f"{where}: format {format_!r}, expected {FORMAT}")
        if manifest.dim != dim:
            raise IndexLoadError(f"{where}: dimension {manifest.dim}, expected {dim}")
        if embedder and manifest.embedder != embedder:
            raise IndexLoadError(f"{where}: built with embedder {manifest.embedder!r}, not {embedder!r}")
        for scope in manifest.counts:
            try:
                _check_length(self._file(scope))
            except (OSError, _Corrupt) as exc:
                raise IndexLoadError(f"{where}: partition of {scope.key!r}: {exc}") from exc
        return manifest


class PartitionFiles:
    """An :class:`IndexFolder`'s partition files, written (and, for searches, read) in an I/O thread of their own,
    so that the index's worker thread keeps serving searches meanwhile: a large partition takes many searches' time
    to write or to read.

    Per scope, writes land in the order they were handed over (one thread, first in first out), and
    :meth:`read` waits for the scope's write under way: a read never sees a file older than the last write. All
    methods but :meth:`read_beside` are called from the index's worker thread."""

    def __init__(self, folder: IndexFolder, dim: int) -> None:
        self.folder = folder
        self._dim = dim
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faiss-io")
        self._writes: dict[Scope, Future[None]] = {}
        """Each scope's latest write (done ones are forgotten as they are noticed)."""

    def write(self, scope: Scope, partition: Partition) -> Future[None]:
        """Write ``partition`` (which must not change until the write is done: hand over a snapshot or an evicted
        partition)."""
        future = self._thread.submit(self.folder.write_partition, scope, partition)
        self._writes[scope] = future
        return future

    def pending(self, scope: Scope) -> Future[None] | None:
        """The scope's write under way, if any."""
        future = self._writes.get(scope)
        if future is not None and future.done() and future.exception() is None:
            del self._writes[scope]
            return None
        return future

    def settle(self, scope: Scope) -> BaseException | None:
        """Wait for the scope's write under way, if any; its error, if it failed."""
        future = self._writes.pop(scope, None)
        return None if future is None else future.exception()

    def read(self, scope: Scope) -> Partition:
        """Read in the calling thread, after the scope's write under way."""
        if (error := self.settle(scope)) is not None:
            log.warning("writing the vector partition of %r failed before it was read back: %s", scope.key, error)
        return self.folder.read_partition(scope, self._dim)

    async def read_beside(self, scope: Scope) -> Partition:
        """Read in the I/O thread, after every write handed over so far."""
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self.folder.read_partition, scope, self._dim
        )

    def close(self) -> None:
        self._thread.shutdown(wait=True)


# --- the partition file format ------------------------------------------------------------------------------------


class _Corrupt(Exception):
    pass


def _write_partition(handle: BinaryIO, scope: Scope, partition: Partition) -> None:
    encoded = [memory_id.encode() if memory_id is not None else None for memory_id in partition.ids]
    sections = [
        memoryview(faiss.serialize_index(partition.index)),
        np.array([len(e) if e is not None else -1 for e in encoded], dtype=np.int32).tobytes(),
        b"".join(e for e in encoded if e is not None),
    ]
    crc = 0
    for section in sections:
        crc = zlib.crc32(section, crc)
    header = json.dumps({
        "tenant": scope.tenant,
        "user": scope.user,
        "dim": partition.dim,
        "trained_on": partition.trained_on,
        "sizes": [section.nbytes if isinstance(section, memoryview) else len(section) for section in sections],
        "crc32": crc,
    }).encode()  # fmt: skip
    handle.write(_MAGIC + struct.pack("<I", len(header)) + header)
    for section in sections:
        handle.write(section)


def _read_partition(data: bytes, dim: int) -> tuple[Scope, Partition]:
    header, start = _header(data, len(data))
    payload = memoryview(data)[start:]
    if zlib.crc32(payload) != header["crc32"]:
        raise _Corrupt("damaged (checksum mismatch)")
    if header["dim"] != dim:
        raise _Corrupt(f"dimension {header['dim']}, expected {dim}")
    index_size, lengths_size, _ = header["sizes"]
    try:
        index = faiss.deserialize_index(np.frombuffer(payload[:index_size], dtype=np.uint8))
        scope = Scope(header["tenant"], header["user"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise _Corrupt(f"unreadable: {exc}") from exc
    lengths = np.frombuffer(payload[index_size : index_size + lengths_size], dtype=np.int32)
    blob = bytes(payload[index_size + lengths_size :])
    return scope, Partition(dim, index, _decode_ids(lengths, blob), header["trained_on"])


def _decode_ids(lengths: np.ndarray, blob: bytes) -> list[str | None]:
    """The ids back from their lengths (-1: a removed label) and their concatenated UTF-8, one by one. (Tried and
    left out: decoding the blob once and slicing it, which takes less interpreter time but raised the latency
    bench's peak RSS.)"""
    ids: list[str | None] = []
    offset = 0
    for length in lengths.tolist():
        if length < 0:
            ids.append(None)
        else:
            ids.append(blob[offset : offset + length].decode())
            offset += length
    return ids


def _check_length(path: Path) -> None:
    """Magic, header and total length agree (a cheap test for a truncated file; the checksum waits for the load)."""
    with path.open("rb") as handle:
        head = handle.read(64 * 1024)
        size = os.fstat(handle.fileno()).st_size
    _header(head, size)


def _header(data: bytes, file_size: int) -> tuple[dict[str, Any], int]:
    try:
        if data[: len(_MAGIC)] != _MAGIC:
            raise _Corrupt("not a partition file")
        (header_size,) = struct.unpack_from("<I", data, len(_MAGIC))
        start = len(_MAGIC) + 4 + header_size
        header = json.loads(data[len(_MAGIC) + 4 : start])
        expected = start + sum(header["sizes"])
    except _Corrupt:
        raise
    except (ValueError, KeyError, TypeError, struct.error) as exc:
        raise _Corrupt(f"unreadable header: {exc}") from exc
    if file_size != expected:
        raise _Corrupt(f"truncated or padded: {file_size} bytes, expected {expected}")
    return header, start
