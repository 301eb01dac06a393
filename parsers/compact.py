"""Lake compaction: each partition's many small parts -> one part, crash-safe.

Why: every ingestion commit writes one Parquet part per (table, month[, bucket]) it touches.
A national month (~150 GB of DSN, hundreds of commits, 128 buckets) would otherwise leave
hundreds of parts of a few kB in every partition, and each crediting shard would open tens of
thousands of files: measured, one table of one bucket read from 75 parts per month costs
~4.5x the CPU of the same rows in one part per month (docs/scaling.md#small-files). So the end
of every ingestion merges the partitions it touched into one part each.

The merged part keeps the name of the partition's FIRST part (``part-<batch id>``: a committed
batch, so ``lake.remove_orphans`` keeps it) and the rows of the parts in name order (commit
order), through the same typed scan the engine uses: the lake's content does not change, only
its files. Each partition is swapped with a small journal, so a crash at any point leaves the
partition either as it was or rolled forward by the next ingestion (``recover_compactions``):

1. merged rows -> ``.compact.tmp``; 2. journal ``.compact.json`` (the parts it replaces);
3. ``.compact.tmp`` -> ``.compact.ready`` (the commit point); 4. ``.compact.ready`` replaces the
first part; 5. the other parts are deleted; 6. the journal is deleted.

Readers glob ``part-*.parquet`` and would see the merged rows twice between steps 4 and 5: the
lake is therefore only compacted by an ingestion holding the DIR lock, which every crediting run
holds too (``flows.steps.ingest_files``)."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Iterable


from parsers.lake import (BUCKET_DIGITS, WRITE_THREADS, lake_path, month_dir, scan_parts,
                          write_part)
from parsers.lake_schema import PERSON_TABLES, TABLES

COMPACT_MIN_PARTS = 2  # a partition with at least this many parts is merged
TMP, READY, JOURNAL = ".compact.tmp", ".compact.ready", ".compact.json"
PENDING = "compact-pending.json"  # in DIR/lake: the months of a compaction not finished yet
# The tables partitioned by month (and bucket): ``files`` (the commit log) is not compacted.
COMPACTED_TABLES = tuple(t for t in TABLES if t != "files")


@dataclass
class CompactReport:
    """What one ``compact`` call merged."""

    partitions: int = 0  # partitions merged
    parts_before: int = 0  # their parts before
    rows: int = 0
    recovered: int = 0  # interrupted compactions rolled forward or back first
    tables: dict[str, int] = field(default_factory=dict)  # partitions merged per table


def _parts(partition: Path) -> list[Path]:
    return sorted(partition.glob("part-*.parquet"))


def partitions(root_dir: Path | str, months: Iterable[object] | None = None) -> list[Path]:
    """Partition directories of the compacted tables (all, or those of some months: ``date``
    values or ``None`` for the rows without a declared month)."""
    lake = lake_path(root_dir)
    wanted = None if months is None else sorted({month_dir(m) for m in months})
    out: list[Path] = []
    for table in COMPACTED_TABLES:
        base = lake / table
        if not base.exists():
            continue
        month_dirs = (sorted(base.glob("month=*")) if wanted is None
                      else [base / m for m in wanted if (base / m).is_dir()])
        for month in month_dirs:
            if table in PERSON_TABLES:
                out.extend(sorted(month.glob(f"bucket={'[0-9]' * BUCKET_DIGITS}")))
            else:
                out.append(month)
    return out


def _table_of(partition: Path) -> str:
    return (partition.parent.parent if partition.name.startswith("bucket=")
            else partition.parent).name


def _merge(partition: Path, parts: list[Path]) -> int:
    """Steps 1-6 for one partition; returns its row count."""
    table = _table_of(partition)
    # in-memory engine: rows keep the parts' order
    df = scan_parts(parts, TABLES[table]).collect(engine="in-memory")
    tmp = partition / TMP
    write_part(df, tmp)
    _fsync(tmp)
    journal = partition / JOURNAL
    journal.write_text(json.dumps({"target": parts[0].name,
                                   "replaces": [p.name for p in parts]}) + "\n")
    _fsync(journal)
    os.replace(tmp, partition / READY)  # commit point
    _roll_forward(partition)
    return df.height


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _roll_forward(partition: Path) -> None:
    """Steps 4-6 from a committed journal (idempotent)."""
    journal = partition / JOURNAL
    plan = json.loads(journal.read_text())
    ready = partition / READY
    if ready.exists():
        os.replace(ready, partition / plan["target"])
    for name in plan["replaces"]:
        if name != plan["target"]:
            (partition / name).unlink(missing_ok=True)
    journal.unlink()


def recover_compactions(root_dir: Path | str) -> int:
    """Finish or undo compactions interrupted by a crash (run before anything reads or writes
    the lake, under the DIR lock). Returns the partitions repaired."""
    lake = lake_path(root_dir)
    if not lake.exists():
        return 0
    repaired = 0
    for marker in sorted(lake.rglob(".compact.*")):  # TMP, READY, JOURNAL: one walk
        partition = marker.parent
        if not marker.exists():  # handled with another marker of the same partition
            continue
        journal, ready = partition / JOURNAL, partition / READY
        if journal.exists() and (ready.exists() or not (partition / TMP).exists()):
            _roll_forward(partition)  # committed (step 3 done): finish it
        else:  # not committed: the original parts are intact
            for p in (partition / TMP, journal, ready):
                p.unlink(missing_ok=True)
        repaired += 1
    return repaired


def pending_months(root_dir: Path | str) -> set:
    """The months of a compaction that did not finish (a crash): the next ingestion compacts
    them too, even when it writes nothing (every file already ingested)."""
    path = lake_path(root_dir) / PENDING
    if not path.exists():
        return set()
    return {None if m is None else date.fromisoformat(m)
            for m in json.loads(path.read_text())["months"]}


def compact(root_dir: Path | str, months: Iterable[object] | None = None,
            min_parts: int = COMPACT_MIN_PARTS) -> CompactReport:
    """Merge every partition (of ``months``: ``date`` or ``None``; default all) holding
    ``min_parts`` parts or more.

    The caller holds the DIR lock (see the module docstring)."""
    report = CompactReport(recovered=recover_compactions(root_dir))
    pending = lake_path(root_dir) / PENDING
    if months is not None:  # a crash below leaves these months to the next ingestion
        months = sorted(set(months) | pending_months(root_dir), key=lambda m: (m is not None, m))
        pending.parent.mkdir(parents=True, exist_ok=True)
        tmp = pending.with_name(f".{PENDING}.tmp")
        tmp.write_text(json.dumps({"months": [None if m is None else m.isoformat()
                                              for m in months]}) + "\n")
        os.replace(tmp, pending)
    todo = [(p, parts) for p in partitions(root_dir, months)
            if len(parts := _parts(p)) >= max(2, min_parts)]
    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:  # Parquet I/O releases the GIL
        rows = list(pool.map(lambda job: _merge(*job), todo))
    pending.unlink(missing_ok=True)
    for (partition, parts), n in zip(todo, rows):
        report.partitions += 1
        report.parts_before += len(parts)
        report.rows += n
        table = _table_of(partition)
        report.tables[table] = report.tables.get(table, 0) + 1
    return report


__all__ = ["compact", "recover_compactions", "pending_months", "partitions", "CompactReport",
           "COMPACT_MIN_PARTS"]
