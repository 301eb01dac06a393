"""The lake on disk: atomic partitioned Parquet writes, checksum dedup, typed scans.

Layout (docs/design.md)::

    DIR/lake/<table>/month=YYYY-MM/bucket=NNN/part-<batch_id>.parquet   person tables
    DIR/lake/<table>/month=YYYY-MM/part-<batch_id>.parquet              declarations, employers, quarantine
    DIR/lake/files/part-<batch_id>.parquet                              one row per ingested file

``decl_month`` and ``bucket`` are also stored as real columns inside the files, so scans use
``hive_partitioning=False`` and keep their types. A batch is committed by writing its
``files`` part LAST: parts whose batch id is not in ``lake/files`` are orphans of an
interrupted run and are removed by ``remove_orphans`` before the next ingestion.
Every file is written to a temporary name in the same directory, then ``os.replace``d.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from parsers import lake_integrity
from parsers.archive import append_commit, archive_dir, read_commits, remove_orphan_bundles
from parsers.lake_schema import DEFAULT_BUCKETS, PERSON_TABLES, TABLES, person_bucket
from parsers.model import ParsedFile

LAKE = "lake"
NO_MONTH = "none"  # partition of rows without a declared month (e.g. FCTU signalements)
BUCKET_DIGITS = 3
_PART_RE = re.compile(r"^part-(?P<batch>.+)\.parquet$")
MONTH_TABLES = ("declarations", "employers", "quarantine")


LAKE_MARKERS = ("files", "settings.json")  # what only a lake folder holds (commit log, settings)


def lake_path(lake_dir_or_root: Path | str) -> Path:
    """The lake folder of ``DIR`` (``DIR/lake``), or ``DIR/lake`` itself when given.

    Decided by what the folder holds, never by its name: a data directory that happens to be
    called ``lake`` used to hold its tables at its top (so a copy or a rename of it lost its
    lake, and ingesting into the copy started an empty one). A folder that already holds lake
    tables at its top (such a directory written before, or ``DIR/lake`` passed directly) is
    used as it is."""
    p = Path(lake_dir_or_root)
    if (p / LAKE).is_dir():
        return p / LAKE
    if any((p / m).exists() for m in LAKE_MARKERS):
        return p
    return p / LAKE


OWNER_MARKERS = ("CURRENT", "runs", "archive")  # what a data directory DIR holds beside its lake


def data_dir(dir_or_lake: Path | str) -> Path:
    """The data directory DIR that owns the lake of ``dir_or_lake``: DIR itself, or DIR when
    ``DIR/lake`` is given. The lock, the DSN archive, the runs and the ledger live in DIR: a
    command given ``DIR/lake`` took ``DIR/lake/.lock`` and so ran beside a crediting of DIR
    (whose lake repair deleted the batch it was writing), and archived into
    ``DIR/lake/archive`` where replay does not look. A folder named ``lake`` holding the
    tables at its top AND the data directory's own files is an old single-folder DIR."""
    p = Path(dir_or_lake)
    if (lake_path(p) == p and p.name == LAKE
            and not any((p / m).exists() for m in OWNER_MARKERS)):
        return p.parent
    return p


# Cheap compression: zstd level 1 is ~3x faster to write than the default level, for files a
# few % larger; statistics are kept (row-group pruning on month/bucket/ids).
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1
WRITE_THREADS = 4  # write_parquet releases the GIL: a batch's many small parts go in parallel


def write_part(df: pl.DataFrame, path: Path) -> None:
    """One lake part with the lake's compression and statistics (no rename: see callers)."""
    df.write_parquet(path, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL,
                     statistics=True)


def scan_parts(parts: list[Path], schema: dict[str, pl.DataType]) -> pl.LazyFrame:
    """Typed scan of Parquet files: ``schema`` decides the columns and types (older files
    missing a column get nulls, extra columns are ignored; no hive partition parsing)."""
    return pl.scan_parquet(parts, hive_partitioning=False, schema=schema,
                           missing_columns="insert", extra_columns="ignore")


def _atomic_write(df: pl.DataFrame, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    write_part(df, tmp)
    os.replace(tmp, target)


_PART_MONTH = "_part_month"  # write_parsed's partition key (dropped before writing)


def month_dir(month: object) -> str:
    """A month partition's folder name (``month=YYYY-MM``; no month: ``NO_MONTH``)."""
    return f"month={month:%Y-%m}" if month is not None else f"month={NO_MONTH}"


def write_parsed(parsed: ParsedFile, root_dir: Path | str, batch_id: str,
                 n_buckets: int = DEFAULT_BUCKETS) -> dict[str, int]:
    """Write one batch (one part file per partition), ``files`` last. Returns rows per table."""
    lake = lake_path(root_dir)
    part = f"part-{batch_id}.parquet"
    written: dict[str, int] = {}
    jobs: list[tuple[pl.DataFrame, Path]] = []
    for table in TABLES:
        if table == "files":
            continue
        df = parsed[table]
        if df.height == 0:
            continue
        # grouped by the month the folder names (``month_dir``), not by the date itself: two
        # dates of one month must never make two parts of one path
        df = df.with_columns(pl.col("decl_month").dt.month_start().alias(_PART_MONTH))
        if table in PERSON_TABLES:
            df = df.with_columns(person_bucket(n_buckets))
            groups = df.partition_by([_PART_MONTH, "bucket"], as_dict=True, maintain_order=True)
            for (month, bucket), g in groups.items():
                jobs.append((g.drop(_PART_MONTH), lake / table / month_dir(month)
                             / f"bucket={bucket:0{BUCKET_DIGITS}d}" / part))
        else:
            for (month,), g in df.partition_by([_PART_MONTH], as_dict=True,
                                               maintain_order=True).items():
                jobs.append((g.drop(_PART_MONTH), lake / table / month_dir(month) / part))
        written[table] = df.height
    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        list(pool.map(lambda job: _atomic_write(*job), jobs))  # re-raises any write error
    # what the parts hold, for lake_integrity (before the commit: an orphan if it never lands)
    lake_integrity.mark_records_start(lake, batch_id)
    _atomic_write(lake_integrity.record(jobs, lake), lake / lake_integrity.PARTITION_ROWS / part)
    files = parsed.files.with_columns(
        pl.lit(batch_id).alias("batch_id"),
        pl.lit(datetime.now(timezone.utc)).cast(TABLES["files"]["ingested_at"]).alias("ingested_at"),
    )
    _atomic_write(files, lake / "files" / part)
    if archive_dir(lake.parent).is_dir():  # after the commit, beside the DSN bytes: a lake
        append_commit(lake.parent, batch_id)  # restored from an older copy does not undo it
    written["files"] = files.height
    return written


def table_parts(lake: Path, table: str) -> list[Path]:
    """A table's part files (every partition), sorted."""
    base = lake / table
    return sorted(base.rglob("part-*.parquet")) if base.exists() else []


def scan(lake_dir_or_root: Path | str, table: str) -> pl.LazyFrame:
    """Typed LazyFrame over a table (an empty frame with the schema when it has no file)."""
    schema = TABLES[table]
    parts = table_parts(lake_path(lake_dir_or_root), table)
    if not parts:
        return pl.LazyFrame(schema=schema)
    return scan_parts(parts, schema)


SHA_WORD_HEX = 16  # hex digits per 64-bit word of a sha256


class KnownChecksums:
    """The sha256 of every file committed to the lake, held as two sorted 64-bit words per file
    (its first 128 bits: 16 bytes per file, ~0.4 GB for a national year of ~24 M files, where a
    set of Python strings would take ~3 GB and grow with every month ingested), plus the full
    checksums added by the running ingestion. Two different files sharing 128 bits of sha256
    is not a practical event (birthday bound ~1e-22 at 1e8 files)."""

    def __init__(self, root_dir: Path | str) -> None:
        # words computed inside the scan: the checksum strings are never all in memory (a
        # national year's at once took 5.5 GB); duplicates are harmless to the lookups
        words = (scan(root_dir, "files").select("file_sha256").drop_nulls()
                 .select(_sha_word(0).alias("hi"), _sha_word(1).alias("lo")).collect())
        hi, lo = words.get_column("hi").to_numpy(), words.get_column("lo").to_numpy()
        order = np.lexsort((lo, hi))  # 8 bytes per file (Polars' two-column sort: ~60)
        self.hi, self.lo = hi[order], lo[order]
        self.added: set[str] = set()

    def __len__(self) -> int:
        return len(self.hi) + len(self.added)

    def __contains__(self, sha256: str) -> bool:
        if sha256 in self.added:
            return True
        hi, lo = (int(sha256[i * SHA_WORD_HEX:(i + 1) * SHA_WORD_HEX], 16) for i in (0, 1))
        left = int(np.searchsorted(self.hi, np.uint64(hi), "left"))
        right = int(np.searchsorted(self.hi, np.uint64(hi), "right"))
        return bool((self.lo[left:right] == np.uint64(lo)).any())

    def add(self, sha256: str) -> None:
        self.added.add(sha256)


def _sha_word(i: int) -> pl.Expr:
    """64-bit word ``i`` of a hex sha256 column, as UInt64."""
    return (pl.col("file_sha256").str.slice(i * SHA_WORD_HEX, SHA_WORD_HEX)
            .str.to_integer(base=16, dtype=pl.UInt64))


def known_checksums(root_dir: Path | str) -> KnownChecksums:
    """sha256 of every file already committed to the lake (``in`` / ``add``)."""
    return KnownChecksums(root_dir)


class LakeDamaged(RuntimeError):
    """Parts of the lake do not hold what their commits wrote (``lake_integrity``)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"the lake is damaged ({len(errors)} problem(s)); nothing was read "
                         "or removed. Restore DIR/lake from its newest backup (the DSN bytes "
                         "are kept in DIR/archive/dsn)")
        self.errors = errors


def committed_batches(lake: Path) -> set[str]:
    """The batch ids of the ``files`` commit log (a few commits a day: not one per file)."""
    try:
        return set(scan(lake, "files").select("batch_id").unique().collect()["batch_id"]
                   .to_list())
    except (pl.exceptions.ComputeError, OSError) as e:  # a truncated or emptied part
        raise LakeDamaged([f"{lake / 'files'}: a commit record is unreadable ({e})"]) from None


def check_integrity(root_dir: Path | str) -> None:
    """Raise ``LakeDamaged`` when a partition's parts do not hold the rows its commits
    recorded, or a part cannot be read (after ``repair_lake``, under the DIR lock)."""
    lake = lake_path(root_dir)
    if lake.exists():
        errors = lake_integrity.integrity_errors(lake, committed_batches(lake))
        if errors:
            raise LakeDamaged(errors)


def remove_orphans(root_dir: Path | str) -> int:
    """Delete parts, archive bundles (and temp files) of batches never committed to
    ``lake/files``."""
    lake = lake_path(root_dir)
    if not lake.exists():
        return remove_orphan_bundles(lake.parent, set())
    committed = committed_batches(lake)
    doomed = []
    for table in [*TABLES, lake_integrity.PARTITION_ROWS]:
        if table == "files":
            continue
        base = lake / table
        if not base.exists():
            continue
        for p in base.rglob("*"):
            if not p.is_file():
                continue
            m = _PART_RE.match(p.name)
            if p.name.endswith(".tmp") or (m and m.group("batch") not in committed):
                doomed.append((p, m.group("batch") if m else None))
    _refuse_lost_commits({b for _, b in doomed if b}, committed, lake)
    removed = remove_orphan_bundles(lake.parent, committed)
    for p, _ in doomed:
        p.unlink()
        removed += 1
    return removed


def _refuse_lost_commits(orphans: set[str], committed: set[str], lake: Path) -> None:
    """A killed ingestion leaves at most its last batch uncommitted (the next ingestion or run
    removes it before committing anything). Parts of a batch the archive's commit log lists
    (``archive.read_commits``), or — a DIR without the log — older than the last commit, lost
    their commit record (``lake/files/part-<batch>.parquet`` deleted or not restored):
    deleting them — and, compacted, the rows of every batch merged into them — would destroy
    data. Refused, nothing removed."""
    when = lake_integrity.batch_time
    last = max(filter(None, map(when, committed)), default=None)
    logged = read_commits(lake.parent) or set()
    lost = sorted(b for b in orphans if b in logged or (last and when(b) and when(b) < last))
    if lost:
        raise LakeDamaged([f"batch {b}: parts in {lake} but no commit record "
                           f"({lake / 'files' / f'part-{b}.parquet'}), although it was "
                           "committed: its commit record was lost; nothing was removed. "
                           "Restore that file from a backup" for b in lost])


__all__ = ["scan", "write_parsed", "known_checksums", "remove_orphans",
           "lake_path"]
