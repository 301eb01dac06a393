"""A lost or damaged lake part is caught before a crediting run reads the lake
(parsers.lake_integrity), through commits and compactions."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows import steps
from parsers.ingest import ingest_paths
from parsers.lake import LakeDamaged, check_integrity, lake_path

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> Path:
    """The samples in two loads: the second one's commits compact the partitions both touch."""
    root = tmp_path_factory.mktemp("integrity") / "DIR"
    files = sorted(SAMPLES.glob("*.dsn"))
    ingest_paths(files[: len(files) // 2], root, workers=1)
    time.sleep(1.1)  # batch ids start with their UTC second: the two loads' differ
    ingest_paths(files[len(files) // 2:], root, workers=1)
    check_integrity(root)  # compacted partitions still hold what was committed
    return root


def one_more_file(tmp_path: Path) -> Path:
    """A folder with one DSN not yet in the lake (a sample plus a final newline: another
    sha256), a second after the last commit (batch ids start with their UTC second)."""
    extra = tmp_path / "extra"
    extra.mkdir(parents=True)
    (extra / "x.dsn").write_bytes(sorted(SAMPLES.glob("*.dsn"))[0].read_bytes() + b"\n")
    time.sleep(1.1)
    return extra


def restored_from_older_copy(ingested: Path, tmp_path: Path, copy_before_run: bool):
    """DIR after a run and one more ingestion, whose lake is then replaced by a copy taken
    before both (``copy_before_run``) or between them: (DIR, the new DSN's folder, the
    archive's files before the restore)."""
    root = copy_of(ingested, tmp_path)
    if not copy_before_run:
        steps.credit(root, 2025, as_of=dt.date(2026, 5, 2))
    older = tmp_path / "older_lake"
    shutil.copytree(lake_path(root), older)
    extra = one_more_file(tmp_path)
    steps.ingest_files([extra], root)
    if copy_before_run:
        steps.credit(root, 2025, as_of=dt.date(2026, 5, 2))
    archive = sorted((root / "archive").rglob("*"))
    shutil.rmtree(lake_path(root))
    shutil.copytree(older, lake_path(root))
    return root, extra, archive


def copy_of(ingested: Path, tmp_path: Path) -> Path:
    root = tmp_path / "DIR"
    shutil.copytree(ingested, root)
    return root


def test_a_lost_part_fails_the_run_before_it_reads(ingested, tmp_path):
    root = copy_of(ingested, tmp_path)
    part = sorted((lake_path(root) / "pay").rglob("part-*.parquet"))[0]
    assert len(list(part.parent.glob("part-*.parquet"))) == 1  # compacted: one per partition
    rows = pq.read_metadata(part).num_rows
    part.unlink()
    with pytest.raises(LakeDamaged) as e:
        steps.prepare(root, 2025, as_of=dt.date(2026, 5, 2))
    assert e.value.errors == [f"{part.parent}: {rows} row(s) recorded by its commits, 0 found "
                              "in its parts (a part lost, damaged or added by hand)"]
    assert not (root / "CURRENT").exists() and not (root / "work").exists()


def test_a_truncated_part_is_named(ingested, tmp_path):
    root = copy_of(ingested, tmp_path)
    part = sorted((lake_path(root) / "contracts").rglob("part-*.parquet"))[-1]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    with pytest.raises(LakeDamaged) as e:
        check_integrity(root)
    assert e.value.errors[0].startswith(f"{part}: unreadable")


def test_a_lost_record_or_commit_record_is_named_and_nothing_removed(ingested, tmp_path):
    root = copy_of(ingested, tmp_path)
    lake = lake_path(root)
    records = sorted((lake / "partition_rows").glob("part-*.parquet"))
    records[-1].unlink()  # the newest batch's record: not a lake from before the records
    with pytest.raises(LakeDamaged) as e:
        check_integrity(root)
    assert "the record of committed batch" in e.value.errors[0]

    root = copy_of(ingested, tmp_path / "b")
    lake = lake_path(root)
    first = sorted((lake / "files").glob("part-*.parquet"))[0]  # an older commit record lost
    parts_before = sorted(p for p in lake.rglob("part-*.parquet") if "files" not in p.parts)
    archive_before = sorted((root / "archive").rglob("*"))
    first.unlink()
    with pytest.raises(LakeDamaged) as e:
        steps.prepare(root, 2025, as_of=dt.date(2026, 5, 2))
    assert "nothing was removed" in e.value.errors[0]  # the archive's log or the orphan parts
    assert sorted(p for p in lake.rglob("part-*.parquet") if "files" not in p.parts) == parts_before
    assert sorted((root / "archive").rglob("*")) == archive_before


def test_the_last_commits_lost_record_and_the_oldest_batch_record_are_caught(ingested, tmp_path):
    """Round-3 acceptance pass: the NEWEST batch's lost lake/files part looked like a killed
    ingestion (its rows and archive deleted, reversals posted), and the OLDEST batch's lost
    integrity record looked like a lake from before the records (check off)."""
    root = copy_of(ingested, tmp_path)
    lake = lake_path(root)
    newest = sorted((lake / "files").glob("part-*.parquet"))[-1]
    archive_before = sorted((root / "archive").rglob("*"))
    newest.unlink()
    with pytest.raises(LakeDamaged, match="damaged"):
        steps.prepare(root, 2025, as_of=dt.date(2026, 5, 2))
    assert sorted((root / "archive").rglob("*")) == archive_before

    root = copy_of(ingested, tmp_path / "b")
    lake = lake_path(root)
    sorted((lake / "partition_rows").glob("part-*.parquet"))[0].unlink()
    with pytest.raises(LakeDamaged) as e:
        check_integrity(root)
    assert "the record of committed batch" in e.value.errors[0]


def test_a_killed_ingestions_last_batch_is_still_removed(ingested, tmp_path, monkeypatch):
    """The batch a crash left without its commit record is newer than the last commit: it
    goes, and the lake checks out."""
    from parsers import lake as lake_module
    root = copy_of(ingested, tmp_path)
    real = lake_module._atomic_write

    def crash_at_commit(df, target):
        if target.parent.name == "files":
            raise OSError("killed")
        real(df, target)

    monkeypatch.setattr(lake_module, "_atomic_write", crash_at_commit)
    extra = one_more_file(tmp_path)
    with pytest.raises(OSError):
        ingest_paths([extra], root, workers=1)
    monkeypatch.setattr(lake_module, "_atomic_write", real)
    steps.prepare(root, 2025, as_of=dt.date(2026, 5, 2))  # repaired, then checked


def test_a_lake_restored_from_an_older_copy_is_refused(ingested, tmp_path):
    """Round-4 acceptance pass: DIR/lake restored from a copy older than the last ingestion
    lost a commit the last run used; the next run deleted that batch's archived DSN (the only
    copy) as an uncommitted leftover and posted reversals."""
    root, extra, archive = restored_from_older_copy(ingested, tmp_path, copy_before_run=True)
    with pytest.raises(LakeDamaged) as e:
        steps.credit(root, 2025, as_of=dt.date(2026, 5, 3))
    assert "restored from an older copy or lost commits; nothing was removed" in e.value.errors[0]
    assert sorted((root / "archive").rglob("*")) == archive
    # the restored lake still ingests (resharding, a rebuild), keeping the archived bytes of
    # the commit it lacks; once the missing DSN are in again, the run goes through
    steps.ingest_files([extra], root)
    assert set(archive) <= set((root / "archive").rglob("*"))
    steps.credit(root, 2025, as_of=dt.date(2026, 5, 3))


def test_a_lake_copy_taken_after_the_run_but_before_the_last_ingestion(ingested, tmp_path):
    """Round-5 acceptance pass: the files count still matched the last run, so the last
    ingestion's archived DSN (the only copy) was deleted as an uncommitted leftover."""
    root, _, archive = restored_from_older_copy(ingested, tmp_path, copy_before_run=False)
    with pytest.raises(LakeDamaged) as e:
        steps.credit(root, 2025, as_of=dt.date(2026, 5, 3))
    assert "DSN file(s) of 1 commit(s) its archive records" in e.value.errors[0]
    assert sorted((root / "archive").rglob("*")) == archive
    # round 6: another ingestion on the restored lake does not hide the missing commit
    more = tmp_path / "more"
    more.mkdir()
    (more / "y.dsn").write_bytes(sorted(SAMPLES.glob("*.dsn"))[1].read_bytes() + b"\n")
    time.sleep(1.1)
    steps.ingest_files([more], root)
    with pytest.raises(LakeDamaged):
        steps.credit(root, 2025, as_of=dt.date(2026, 5, 3))
    assert set(archive) <= set((root / "archive").rglob("*"))


def test_a_dir_without_the_commit_log_keeps_every_bundle(ingested, tmp_path):
    """Round 6: with no archive/commits (a DIR written before it), an ingestion into a lake
    restored from an older copy deleted the newer bundle, the only copy of its DSN."""
    root, _, archive = restored_from_older_copy(ingested, tmp_path, copy_before_run=False)
    (root / "archive" / "commits").unlink()
    steps.ingest_files([one_more_file(tmp_path / "b")], root)
    assert set(archive) - {root / "archive" / "commits"} <= set((root / "archive").rglob("*"))


def test_a_lake_recorded_before_the_marks_gets_them_from_its_oldest_record(ingested, tmp_path):
    root = copy_of(ingested, tmp_path)
    lake = lake_path(root)
    records = sorted((lake / "partition_rows").glob("part-*.parquet"))
    (lake / "records_since").unlink()
    extra = one_more_file(tmp_path)
    steps.ingest_files([extra], root)
    assert (lake / "records_since").read_text().strip() == \
        records[0].name.removeprefix("part-").removesuffix(".parquet")
    records[0].unlink()
    with pytest.raises(LakeDamaged):
        check_integrity(root)
