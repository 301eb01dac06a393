"""generator.lake writes the lake layout and schemas of parsers/lake_schema.py exactly."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from generator.lake import generate_lake
from parsers.lake_schema import PERSON_TABLES, TABLES


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("genlake")
    generate_lake(root, people=3000, year=2025, seed=1, n_buckets=4)
    return root


def test_every_part_matches_the_schema_exactly(lake_root):
    lake = lake_root / "lake"
    seen = set()
    for part in lake.rglob("*.parquet"):
        table = part.relative_to(lake).parts[0]
        seen.add(table)
        schema = pl.read_parquet_schema(part)
        assert list(schema.items()) == list(TABLES[table].items()), part
    assert seen >= {"declarations", "employers", "files", *PERSON_TABLES}


def test_partition_directories_match_stored_columns(lake_root):
    lake = lake_root / "lake"
    for table in PERSON_TABLES:
        for part in (lake / table).rglob("part-gen.parquet"):
            month, bucket = part.parent.parent.name, part.parent.name
            df = pl.read_parquet(part, columns=["decl_month", "bucket"])
            assert df["decl_month"].dt.strftime("month=%Y-%m").unique().to_list() == [month]
            assert df["bucket"].unique().to_list() == [int(bucket.split("=")[1])]


def test_declarations_are_plain_monthly_dsn(lake_root):
    d = pl.read_parquet(lake_root / "lake" / "declarations" / "**" / "*.parquet")
    assert d["nature"].unique().to_list() == ["01"]
    assert not d["envoi_is_test"].any() and not d["rejected"].any()
    c = pl.read_parquet(lake_root / "lake" / "contracts" / "**" / "*.parquet")
    assert set(c["decl_id"].unique()) <= set(d["decl_id"])
    a = pl.read_parquet(lake_root / "lake" / "activities" / "**" / "*.parquet")
    assert a["pay_type"].unique().to_list() == ["002"]


def test_batch_is_committed_and_readable_by_the_parsers_lake(lake_root):
    lake_mod = pytest.importorskip("parsers.lake")
    assert lake_mod.remove_orphans(lake_root) == 0
    assert lake_mod.scan(lake_root, "pay").select(pl.len()).collect().item() > 0
