"""What each committed batch wrote, per partition, so that a lost or damaged lake part is
caught before a crediting run reads the lake.

Why: the ``files`` commit log says which DSN files are in the lake, not which parts hold their
rows. A part deleted or truncated by storage damage (or a bad restore) looked like "no data":
the next run published reversals, exit 0 (found by the crash acceptance pass). Every commit
now records its rows per partition (``lake/partition_rows/part-<batch>.parquet``, written
before the batch's ``files`` part, so an uncommitted batch's record is an orphan like its
parts); compaction merges the parts of a partition without changing its row count, so the
sum of the records of a partition must equal the rows of its parts (read from the Parquet
footers, not the data).
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

PARTITION_ROWS = "partition_rows"  # folder in DIR/lake
RECORDS_SINCE = "records_since"  # in DIR/lake: the first batch committed with a record
RECORD_SCHEMA = {"table": pl.String, "partition": pl.String, "rows": pl.Int64}


def record(jobs: list[tuple[pl.DataFrame, Path]], lake: Path) -> pl.DataFrame:
    """The rows each (table, partition) gets from one batch's parts (``write_parsed`` jobs)."""
    rows = [(p.parent.relative_to(lake).parts[0], p.parent.relative_to(lake).as_posix(), df.height)
            for df, p in jobs]
    return (pl.DataFrame(rows, schema=RECORD_SCHEMA, orient="row")
            .group_by("table", "partition").agg(pl.col("rows").sum()).sort("table", "partition"))


def write_mark(path: Path, batch_id: str) -> None:
    """A one-line mark file (a batch id), replaced atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(batch_id + "\n")
    os.replace(tmp, path)


def read_mark(path: Path) -> str | None:
    return path.read_text().strip() or None if path.exists() else None


def mark_records_start(lake: Path, batch_id: str) -> None:
    """The first batch committed with a record: every batch from it on must have one (a lake
    written before the records has older batches without)."""
    if not (lake / RECORDS_SINCE).exists():
        lake.mkdir(parents=True, exist_ok=True)
        earlier = sorted((lake / PARTITION_ROWS).glob("part-*.parquet")) \
            if (lake / PARTITION_ROWS).exists() else []  # records written before the mark
        first = min((p.name.removeprefix("part-").removesuffix(".parquet") for p in earlier),
                    key=lambda b: (batch_time(b) or "", b), default=batch_id)
        write_mark(lake / RECORDS_SINCE, first)


def batch_time(batch_id: str) -> str | None:
    """The UTC second a batch id starts with (``ingest.new_batch_id``), None if it has none."""
    head = batch_id.split("-", 1)[0]
    return head if len(head) == 15 and head[8] == "T" and head.replace("T", "").isdigit() else None


def integrity_errors(lake: Path, committed: set[str]) -> list[str]:
    """Partitions whose parts do not hold the rows their commits recorded, parts that cannot
    be read, and commits whose record is missing: one line each, naming the folder or file.
    [] when every committed batch has a record and the parts agree. A lake whose first
    batches were committed before the records existed is not checked (their counts are
    unknown); a batch committed after the first record without one lost it."""
    base = lake / PARTITION_ROWS
    recs = sorted(base.glob("part-*.parquet")) if base.exists() else []
    recorded = {p.name.removeprefix("part-").removesuffix(".parquet") for p in recs}
    since = read_mark(lake / RECORDS_SINCE)
    first = batch_time(since) if since else min(filter(None, map(batch_time, recorded)),
                                                default=None)
    unrecorded = sorted(committed - recorded)
    lost = [b for b in unrecorded if b == since or (first and batch_time(b)
                                                    and batch_time(b) >= first)]
    if lost:
        return [f"{base / f'part-{b}.parquet'}: the record of committed batch {b} is missing "
                "(lost or removed): its partitions cannot be checked" for b in lost]
    if not committed or unrecorded:
        return []
    expected = (pl.scan_parquet(recs).group_by("partition").agg(pl.col("rows").sum())
                .collect())
    expected = dict(zip(expected["partition"].to_list(), expected["rows"].to_list()))
    found: dict[str, int] = {}
    errors = []
    for table in sorted({k.split("/")[0] for k in expected}):
        for part in sorted((lake / table).rglob("part-*.parquet")):
            key = part.parent.relative_to(lake).as_posix()
            try:
                n = pq.read_metadata(part).num_rows
            except Exception as e:  # truncated, emptied, not Parquet
                errors.append(f"{part}: unreadable ({e})")
                continue
            found[key] = found.get(key, 0) + n
    for key in sorted(set(expected) | set(found)):
        want, got = expected.get(key, 0), found.get(key, 0)
        if want != got and not any(e.startswith(str(lake / key) + "/") for e in errors):
            errors.append(f"{lake / key}: {want} row(s) recorded by its commits, {got} found "
                          "in its parts (a part lost, damaged or added by hand)")
    return errors
