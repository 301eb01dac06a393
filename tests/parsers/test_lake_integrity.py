"""A lost or damaged lake part is caught before a crediting run reads the lake
(parsers.lake_integrity), through commits and compactions."""

from __future__ import annotations

import datetime as dt
import shutil
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
    ingest_paths(files[len(files) // 2:], root, workers=1)
    check_integrity(root)  # compacted partitions still hold what was committed
    return root


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
