"""The lake's person bucket count is fixed by its first ingestion and honoured everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import app
from parsers.lake import scan
from parsers.lake_schema import person_bucket
from parsers.lake_settings import LakeSettingsError, bucket_count, fix_bucket_count, settings_path

runner = CliRunner()
SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


@pytest.fixture
def sample_files() -> list[Path]:
    return sorted(SAMPLES.glob("*.dsn"))


def test_first_ingestion_fixes_the_count_and_later_ones_keep_it(tmp_path, sample_files):
    lake = tmp_path / "lake_dir"
    r = runner.invoke(app, ["ingest", str(sample_files[0]), "--lake", str(lake),
                            "--lake-buckets", "64"])
    assert r.exit_code == 0, r.output
    assert json.loads(settings_path(lake).read_text())["n_buckets"] == 64
    # a later ingestion without the option keeps 64; asking for another count is a usage error
    r = runner.invoke(app, ["ingest", str(sample_files[1]), "--lake", str(lake)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["ingest", str(sample_files[2]), "--lake", str(lake),
                            "--lake-buckets", "16"])
    assert r.exit_code == 2 and "64" in r.output
    ind = scan(lake, "individuals").select("nir", "bucket").collect()
    assert ind.height > 0
    assert ind.filter(pl.col("nir").is_not_null()).select(
        (pl.col("bucket") == person_bucket(64).alias("b")).all()).item()
    assert ind["bucket"].max() >= 16 or ind.height < 8  # really 64 buckets, not 16


def test_settings_rules(tmp_path):
    assert bucket_count(tmp_path) == 16  # a lake without settings: the default
    with pytest.raises(LakeSettingsError):
        fix_bucket_count(tmp_path, 0)
    assert fix_bucket_count(tmp_path, 8, record=False) == 8
    assert not settings_path(tmp_path).exists()
    assert fix_bucket_count(tmp_path, 8) == 8
    assert fix_bucket_count(tmp_path) == 8
    with pytest.raises(LakeSettingsError, match="8 person buckets"):
        fix_bucket_count(tmp_path, 32)


def test_memory_plan_counts_the_declarations_a_shard_refers_to(tmp_path):
    """A crediting process holds the current declarations its shard's rows refer to: the
    planner's shard estimate grows with the lake's declarations, less so when they are small
    (few people each) and spread over many shards."""
    from flows.runners import PROCESS_GB_PER_MILLION_DECLARATIONS, declarations_share, plan

    def lake(name: str, n_decls: int, individuals: int, shards: int):
        root = tmp_path / name
        for b in range(shards):
            part = root / "lake" / "contracts" / "month=2025-01" / f"bucket={b:03d}"
            part.mkdir(parents=True)
            pl.DataFrame({"x": list(range(1000))}).write_parquet(part / "part-0.parquet")
        for table, n in (("declarations", n_decls), ("individuals", individuals)):
            d = root / "lake" / table / "month=2025-01"
            d.mkdir(parents=True)
            pl.DataFrame({"x": pl.repeat(0, n, dtype=pl.Int8, eager=True)}).write_parquet(
                d / "part-0.parquet")  # only the row count matters (Parquet metadata)
        return plan(root, runner="thread", buckets=shards, max_workers=1, max_memory_gb=64)

    few = lake("few", 10, 1_000, 1)
    many = lake("many", 2_000_000, 20_000_000, 1)  # 10 people each, one shard: all held
    assert (few.declarations, many.declarations) == (10, 2_000_000)
    assert many.people_per_declaration == 10
    assert many.est_shard_gb - few.est_shard_gb == pytest.approx(
        2 * PROCESS_GB_PER_MILLION_DECLARATIONS, abs=0.01)
    assert declarations_share(10, 128) == pytest.approx(0.0754, abs=1e-3)
    assert declarations_share(100, 16) > 0.99
    assert few.note() is None
    # more shards than lake buckets: a shard is at least one bucket, and the run says so
    capped = plan(tmp_path / "few", runner="thread", buckets=32, max_workers=1,
                  max_memory_gb=64)
    assert capped.shards == 1 and capped.note() == (
        "32 shards asked for, but the lake has 1 person bucket(s): 1 shard(s) used")


def test_lake_rows_skips_a_part_a_crashed_ingestion_left(tmp_path):
    """Sizing reads the lake before the run takes the DIR lock: an unfinished part (not
    Parquet) is skipped there, not a traceback; the run removes it under the lock."""
    import polars as pl

    from flows.runners import lake_rows
    d = tmp_path / "lake" / "declarations" / "month=2025-04"
    d.mkdir(parents=True)
    pl.DataFrame({"x": [1, 2, 3]}).write_parquet(d / "part-a.parquet")
    (d / "part-b.parquet").write_bytes(b"PAR1 truncated")
    assert lake_rows(tmp_path, "declarations") == 3
