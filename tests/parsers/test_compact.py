"""Lake compaction: one part per partition after an ingestion, same rows in the same order,
and a crash at any step leaves a lake the next ingestion repairs (``parsers.compact``)."""

from __future__ import annotations

import json
import os
import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from parsers import compact as C
from parsers import ingest
from parsers.lake import lake_path, scan
from parsers.lake_integrity import PARTITION_ROWS
from parsers.lake_schema import TABLES

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
TWO_MONTHS = "*_20250[12]_11.dsn"  # 4 employers x 2 months: commits share partitions


def _parts(root: Path) -> list[Path]:
    return sorted(lake_path(root).rglob("part-*.parquet"))


def _markers(root: Path) -> list[Path]:
    return [p for p in lake_path(root).rglob(".compact.*")]


def _content(root: Path) -> dict[str, pl.DataFrame]:
    return {t: scan(root, t).collect() for t in TABLES}


@pytest.fixture
def many_parts(tmp_path, monkeypatch) -> Path:
    """The samples ingested one file per commit, without the final compaction."""
    src = tmp_path / "dsn"
    src.mkdir()
    for f in sorted(SAMPLES.glob(TWO_MONTHS)):
        shutil.copy(f, src / f.name)
    monkeypatch.setattr(ingest, "BATCH_MAX_BYTES", 1)
    monkeypatch.setattr(ingest, "COMMIT_MAX_FILES", 1)
    monkeypatch.setattr(ingest, "compact", lambda *a, **k: C.CompactReport())
    root = tmp_path / "DIR"
    report = ingest.ingest_paths([src], root, workers=1)
    assert len(report.batches) == 8
    monkeypatch.undo()
    return root


def test_compaction_keeps_rows_and_their_order(many_parts):
    root = many_parts
    before, n_before = _content(root), len(_parts(root))
    report = C.compact(root)
    assert report.partitions > 0 and report.parts_before > report.partitions
    assert len(_parts(root)) == n_before - report.parts_before + report.partitions
    for partition in C.partitions(root):  # one part per partition, named after its first batch
        assert len(list(partition.glob("part-*.parquet"))) == 1
    for table, df in _content(root).items():
        assert df.equals(before[table]), table  # same rows, same scan order
    assert C.compact(root).partitions == 0  # idempotent
    # later ingestions still recognise the files (the commit log is not compacted)
    again = ingest.ingest_paths([root.parent / "dsn"], root, workers=1)
    assert again.files_ingested == 0 and again.files_skipped_duplicate == 8


def test_ingestion_ends_compacted(tmp_path, monkeypatch):
    """Small commits, then the ingestion's own compaction: one part per partition, and the
    same rows as one big commit."""
    src = tmp_path / "dsn"
    src.mkdir()
    for f in sorted(SAMPLES.glob(TWO_MONTHS)):
        shutil.copy(f, src / f.name)
    whole = ingest.ingest_paths([src], tmp_path / "whole", workers=1)
    monkeypatch.setattr(ingest, "BATCH_MAX_BYTES", 1)
    monkeypatch.setattr(ingest, "COMMIT_MAX_FILES", 2)
    split = ingest.ingest_paths([src], tmp_path / "split", workers=1)
    assert len(split.batches) == 4 and split.partitions_compacted > 0
    assert split.parts_compacted > split.partitions_compacted
    data_parts = lambda root: [p for p in _parts(root)  # noqa: E731  (not the commit records)
                               if "files" not in p.parts and PARTITION_ROWS not in p.parts]
    assert len(data_parts(tmp_path / "split")) == len(data_parts(tmp_path / "whole"))
    for table in TABLES:
        a = scan(tmp_path / "whole", table).collect().drop("batch_id", "ingested_at", strict=False)
        b = scan(tmp_path / "split", table).collect().drop("batch_id", "ingested_at", strict=False)
        assert a.sort(a.columns, nulls_last=True).equals(b.sort(b.columns, nulls_last=True)), table
    assert whole.partitions_compacted == 0


def _crash(monkeypatch, target: str, after_replace: bool = False):
    """Make the first call of ``target`` in parsers.compact raise (a crash at that step)."""
    real = getattr(C, target) if target != "os.replace" else os.replace

    def boom(*args, **kwargs):
        if target == "os.replace" and not str(args[0]).endswith(C.TMP):
            return real(*args, **kwargs)  # only the merged part's commit rename crashes
        if after_replace:  # roll-forward crashed after the ready part replaced the first part
            plan = json.loads((args[0] / C.JOURNAL).read_text())
            os.replace(args[0] / C.READY, args[0] / plan["target"])
        raise OSError("simulated crash")

    if target == "os.replace":
        monkeypatch.setattr(C.os, "replace", boom)
    else:
        monkeypatch.setattr(C, target, boom)
    return real


@pytest.mark.parametrize("step, rolled", [
    ("os.replace", False),  # crash before the commit point: .compact.tmp + journal
    ("_roll_forward", True),  # crash after it: .compact.ready + journal
    ("after_replace", True),  # crash while deleting the merged parts: journal only
])
def test_a_crash_during_compaction_is_repaired(many_parts, monkeypatch, step, rolled):
    root = many_parts
    before, n_before = _content(root), len(_parts(root))
    months = {date(2025, 1, 1), date(2025, 2, 1)}  # what the ingestion wrote
    _crash(monkeypatch, "_roll_forward" if step == "after_replace" else step,
           after_replace=step == "after_replace")
    with pytest.raises(OSError, match="simulated crash"):
        C.compact(root, months)
    monkeypatch.undo()
    assert _markers(root) and C.pending_months(root) == months
    repaired = C.recover_compactions(root)
    assert repaired > 0 and not _markers(root)
    assert (len(_parts(root)) < n_before) if rolled else (len(_parts(root)) == n_before)
    for table, df in _content(root).items():
        assert df.equals(before[table]), table
    # rerunning the load (every file already ingested) finishes the crashed compaction
    report = ingest.ingest_paths([root.parent / "dsn"], root, workers=1)
    assert report.files_ingested == 0 and report.partitions_compacted > 0
    assert C.compact(root).partitions == 0 and not _markers(root)
    assert C.pending_months(root) == set()
    for table, df in _content(root).items():
        assert df.equals(before[table]), table


def test_commit_limits_grow_with_buckets():
    base = ingest.commit_limits(ingest.COMMIT_SCALE_BUCKETS)
    assert base == (ingest.COMMIT_MAX_BYTES, ingest.COMMIT_MAX_FILES)
    assert ingest.commit_limits(1) == base
    assert ingest.commit_limits(64)[0] == 4 * ingest.COMMIT_MAX_BYTES
    assert ingest.commit_limits(4096) == (ingest.COMMIT_SCALE_MAX * ingest.COMMIT_MAX_BYTES,
                                          ingest.COMMIT_SCALE_MAX * ingest.COMMIT_MAX_FILES)


def test_ingestion_waits_for_no_run(tmp_path):
    """Ingestion takes the DIR lock that crediting runs hold: it never writes (nor compacts)
    a lake a run is reading."""
    from flows.steps import ingest_files
    from pipeline.publish import PublishError, run_lock

    root = tmp_path / "DIR"
    with run_lock(root):
        with pytest.raises(PublishError, match="another run"):
            ingest_files([sorted(SAMPLES.glob("*.dsn"))[0]], root)
    assert ingest_files([sorted(SAMPLES.glob("*.dsn"))[0]], root)["files_ingested"] == 1
