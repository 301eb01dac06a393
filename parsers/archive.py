"""Byte copies of every ingested input, kept for auditors' replay: one bundle per lake commit.

Layout: ``DIR/archive/dsn/part-<batch_id>.parquet``, one row per input file (``file_sha256``,
``source_file``, ``size_bytes``, ``data``: its exact bytes), zstd-compressed, one row group
per parse batch (a replay reads one row group at a time: memory stays that of a parse batch).

Why bundles and not one copy per file: a national year is ~24 million DSN files of ~75 KB.
One archive file each costs about a millisecond of kernel time here (create, write, rename;
``docs/ingestion.md#archive``), i.e. hours a year, plus 24 million inodes in one directory;
and DSN text compresses ~14x (1.8 TB a year -> ~130 GB). A bundle is renamed into place
before its commit's ``lake/files`` part is written, so a committed file always has its copy;
a bundle without a commit is an orphan (``remove_orphans``).

Lakes ingested before bundles hold ``DIR/archive/dsn/<sha256>`` byte copies: still read.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from parsers.flat import SourceBytes

ARCHIVE = Path("archive") / "dsn"
BUNDLE_PREFIX, BUNDLE_SUFFIX = "part-", ".parquet"
TMP_SUFFIX = ".tmp"
COMPRESSION, COMPRESSION_LEVEL = "zstd", 1  # ~0.8 GB/s per core: cheaper than the page cache
BUNDLE_SCHEMA = pa.schema([("file_sha256", pa.string()), ("source_file", pa.string()),
                           ("size_bytes", pa.int64()), ("data", pa.large_binary())])


class ArchiveError(RuntimeError):
    """An archived input is missing or its bytes no longer match its checksum."""


def archive_dir(root_dir: Path | str) -> Path:
    return Path(root_dir) / ARCHIVE


def bundle_path(root_dir: Path | str, batch_id: str) -> Path:
    return archive_dir(root_dir) / f"{BUNDLE_PREFIX}{batch_id}{BUNDLE_SUFFIX}"


def bundle_batch_id(path: Path) -> str | None:
    """The commit a bundle belongs to (None: not a bundle, e.g. a legacy per-file copy)."""
    name = path.name
    if name.startswith(BUNDLE_PREFIX) and name.endswith(BUNDLE_SUFFIX):
        return name[len(BUNDLE_PREFIX):-len(BUNDLE_SUFFIX)]
    return None


class BundleWriter:
    """Writes one commit's bundle: ``add`` a parse batch's sources (one row group each),
    then ``publish`` (rename into place) before the commit's ``files`` part, or ``discard``."""

    def __init__(self, root_dir: Path | str, batch_id: str) -> None:
        self.path = bundle_path(root_dir, batch_id)
        self.tmp = self.path.with_name(f".{self.path.name}{TMP_SUFFIX}")
        self._writer: pq.ParquetWriter | None = None

    def add(self, sources: list[SourceBytes]) -> None:
        if not sources:
            return
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(
                self.tmp, BUNDLE_SCHEMA, compression=COMPRESSION,
                compression_level=COMPRESSION_LEVEL, use_dictionary=False,
                write_statistics=False)
        self._writer.write_table(pa.table({
            "file_sha256": [s.sha256 for s in sources],
            "source_file": [s.source_file for s in sources],
            "size_bytes": [len(s.data) for s in sources],
            "data": pa.array([s.data for s in sources], pa.large_binary()),
        }, schema=BUNDLE_SCHEMA), row_group_size=len(sources))

    def publish(self) -> Path | None:
        """Close and rename into place (None when nothing was added)."""
        if self._writer is None:
            return None
        self._writer.close()
        self._writer = None
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class ArchivedBatch:
    """One row group of a bundle, restricted to the checksums wanted (a replay's parse batch)."""

    bundle: Path
    row_group: int
    wanted: frozenset[str]


def read_archived(batch: ArchivedBatch) -> list[SourceBytes]:
    """The wanted inputs of one bundle row group, in bundle order, each checked against its
    checksum (a changed byte fails the replay rather than replaying something else)."""
    table = pq.ParquetFile(batch.bundle).read_row_group(batch.row_group)
    out = []
    for sha, name, data in zip(table.column("file_sha256").to_pylist(),
                               table.column("source_file").to_pylist(),
                               table.column("data").to_pylist()):
        if sha not in batch.wanted:
            continue
        if hashlib.sha256(data).hexdigest() != sha:
            raise ArchiveError(f"archived input {name} (sha256 {sha}) in {batch.bundle} "
                               "does not match its sha256")
        out.append(SourceBytes(name, data, sha))
    return out


@dataclass
class ArchivedInputs:
    """Where the archived copies of a list of inputs are: legacy per-file copies, bundle row
    groups, and the checksums found nowhere."""

    files: list[Path]
    batches: list[ArchivedBatch]
    missing: list[str]

    def __len__(self) -> int:
        return len(self.files) + sum(len(b.wanted) for b in self.batches)


def locate(root_dir: Path | str, wanted: pl.DataFrame) -> ArchivedInputs:
    """Find the archived copy of each input of ``wanted`` (``file_sha256``, and ``batch_id``:
    the lake commit whose bundle holds it, null when the lake does not know the file). Work
    per commit, not per file: a bundle's checksums are read once; a file is looked up as a
    legacy per-file copy only when its commit has no bundle (a lake from before bundles)."""
    base = archive_dir(root_dir)
    files: list[Path] = []
    batches: list[ArchivedBatch] = []
    missing: list[str] = []
    for batch_id, shas in (wanted.group_by("batch_id").agg("file_sha256")
                           .sort("batch_id", nulls_last=True).iter_rows()):
        bundle = bundle_path(root_dir, batch_id) if batch_id is not None else None
        if bundle is None or not bundle.exists():
            for sha in shas:
                legacy = base / sha
                if legacy.exists():
                    files.append(legacy)
                else:
                    missing.append(sha)
            continue
        want, found = set(shas), set()
        pf = pq.ParquetFile(bundle)
        for rg in range(pf.num_row_groups):
            here = set(pf.read_row_group(rg, columns=["file_sha256"])
                       .column("file_sha256").to_pylist()) & want
            if here:
                batches.append(ArchivedBatch(bundle, rg, frozenset(here)))
                found |= here
        missing += sorted(want - found)
    return ArchivedInputs(files, batches, missing)


COMMITS = "commits"  # DIR/archive/commits: every batch the lake committed, one id a line


def commits_path(root_dir: Path | str) -> Path:
    """DIR/archive/commits (not among the bundles, whose folder holds only DSN bytes)."""
    return archive_dir(root_dir).parent / COMMITS


def append_commit(root_dir: Path | str, batch_id: str) -> None:
    """Record a lake commit beside its bundle, append-only: a lake restored from an older
    copy does not undo it."""
    with open(commits_path(root_dir), "a") as fh:
        fh.write(batch_id + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_commits(root_dir: Path | str) -> set[str] | None:
    """Every batch the lake committed, by the archive's log; None when the DIR has no log
    (written before it existed)."""
    p = commits_path(root_dir)
    return set(p.read_text().split()) if p.exists() else None


def bundle_checksums(root_dir: Path | str, batch_ids: set[str]) -> pl.Series:
    """The file_sha256 a set of batches' bundles hold."""
    paths = [bundle_path(root_dir, b) for b in sorted(batch_ids)]
    paths = [p for p in paths if p.exists()]
    if not paths:
        return pl.Series("file_sha256", [], pl.String)
    return pl.scan_parquet(paths).select("file_sha256").collect().to_series()


def remove_orphan_bundles(root_dir: Path | str, committed: set[str]) -> int:
    """Delete bundles of commits that never happened, and temporary files. Only a bundle the
    archive's commit log does not list is such a leftover: one it lists was committed once
    (a lake restored from an older copy no longer lists it; it is the only copy of those DSN
    bytes), and a DIR without the log keeps every bundle."""
    base = archive_dir(root_dir)
    if not base.exists():
        return 0
    logged = read_commits(root_dir)
    if logged is None and not committed:  # a new DIR whose first commit never happened
        logged = set()
    removed = 0
    for p in base.iterdir():
        batch = bundle_batch_id(p)
        if p.name.endswith(TMP_SUFFIX) or (batch is not None and batch not in committed
                                           and logged is not None and batch not in logged):
            p.unlink()
            removed += 1
    return removed
