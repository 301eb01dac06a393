"""A person whose NIR changed (S21.G00.31.008) has ONE ceiling: the balance their former NIRs
hold counts, although the journal keeps those entries under the former NIR.

Found by an acceptance pass: 4 800 € imported on the old NIR, then 500 € credited on the new
one (5 300 € for one person, ceiling 5 000 €)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import polars as pl
import pytest

from flows import steps
from pipeline import publish as pub
from pipeline.ledger import (RunMeta, conform, former_nir_balances, opening_imports,
                             plan_year_postings)

from .conftest import nir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
from scenario import ingest_case  # noqa: E402

META = RunMeta(run_id="r1", code_version="test", param_version="p")
OLD, NEW = "1850199456783", "1850175123457"  # NIA (bucket 15) replaced by the NIR (bucket 1)
LINKS = pl.DataFrame({"old_nir": [OLD], "nir": [NEW]})


def amounts(rows: list[tuple], year: int = 2025) -> pl.DataFrame:
    """rows: (nir, annual_amount_cents, ceiling_cents)"""
    return pl.DataFrame(rows, schema={"nir": pl.String, "annual_amount_cents": pl.Int64,
                                      "ceiling_cents": pl.Int64}, orient="row"
                        ).with_columns(pl.lit(year, pl.Int32).alias("year"))


def opening(rows: list[tuple]) -> pl.LazyFrame:
    return pl.DataFrame(rows, schema={"nir": pl.String, "earned_balance_cents": pl.Int64},
                        orient="row").lazy()


def test_former_nir_import_counts_under_the_ceiling():
    op = opening([(OLD, 480_000)])
    empty = conform(pl.DataFrame(schema={"nir": pl.String}))
    former = former_nir_balances(LINKS, empty.lazy(), op, 2025, META)
    assert former.rows(named=True) == [{"nir": NEW, "former_before_cents": 480_000,
                                        "former_now_cents": 480_000, "former_hours_before": 0,
                                        "former_hours_now": 0}]
    p = plan_year_postings(empty, amounts([(NEW, 50_000, 500_000)]), 2025, META, opening=op,
                           former=former)
    assert not p.errors, p.errors
    row = p.credits.row(0, named=True)
    assert (row["balance_before_cents"], row["credit_cents"], row["balance_after_cents"],
            row["former_nirs_balance_cents"]) == (480_000, 20_000, 500_000, 480_000)
    # without the link the new NIR would be credited in full (the defect)
    alone = plan_year_postings(empty, amounts([(NEW, 50_000, 500_000)]), 2025, META, opening=op)
    assert alone.credits["credit_cents"].item() == 50_000


def test_former_nir_credits_of_the_year_are_reversed_not_counted():
    """Year N first credited under the old NIR, then recomputed under the new one: the old
    NIR's year-N credit is reversed by its own shard, so only its earlier years count."""
    hist, _ = opening_imports(conform(pl.DataFrame(schema={"nir": pl.String})).lazy(),
                              opening([(OLD, 450_000)]), 2024, META, "balances:x")
    first = plan_year_postings(hist, amounts([(OLD, 50_000, 500_000)]), 2025, META)
    assert first.credits["credit_cents"].item() == 50_000
    ledger = conform(pl.concat([hist, first.entries]))
    meta2 = RunMeta(run_id="r2", code_version="test", param_version="p")
    former = former_nir_balances(LINKS, ledger.lazy(), None, 2025, meta2)
    assert former.select("former_before_cents", "former_now_cents").row(0) == (450_000, 450_000)
    p = plan_year_postings(ledger, amounts([(NEW, 50_000, 500_000)]), 2025, meta2,
                           former=former)
    assert not p.errors, p.errors
    got = {(r["nir"], r["kind"]): r["amount_cents"] for r in p.entries.iter_rows(named=True)}
    assert got == {(OLD, "reversal"): -50_000, (NEW, "annual_credit"): 50_000}
    # an old NIR at the ceiling leaves no room to the person
    full = former_nir_balances(LINKS, ledger.lazy(), opening([(OLD, 1)]), 2026, meta2)
    p26 = plan_year_postings(ledger, amounts([(NEW, 50_000, 500_000)], 2026), 2026, meta2,
                             former=full)
    assert not p26.errors, p26.errors
    assert p26.credits["credit_cents"].item() == 0


NIA_CASE = {  # tests/pipeline/cases.yaml "NIA replaced by the NIR in July (31.008)"
    "year": 2025, "nir": NEW, "old_nir": OLD, "nir_change_month": 7,
    "contracts": [{"start": dt.date(2020, 1, 1), "reference": 169.00, "quota": 84.50,
                   "modality": "20", "worked": {"1-12": 84.50}}],
}


@pytest.fixture(scope="module")
def nia_lake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nia")
    ingest_case(NIA_CASE, root)
    return root


def _copy(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("shards", [None, 4])  # 4 shards: the NIA (bucket 15) and the NIR
def test_ceiling_across_nirs_through_the_run(nia_lake, tmp_path, shards):  # (bucket 1) apart
    root = _copy(nia_lake, tmp_path / "DIR")
    bal = tmp_path / "balances.csv"
    bal.write_text(f"nir,earned_balance_cents\n{OLD},480000\n")
    run = (steps.credit if shards is None
           else lambda *a, **k: steps.credit_sharded(*a, shards=shards, **k))
    out = run(root, 2025, balances=bal, as_of=dt.date(2026, 5, 2))
    ac = pl.read_parquet(Path(out.run_dir) / "annual_credits.parquet")
    assert ac["nir"].to_list() == [NEW]
    row = ac.row(0, named=True)
    assert (row["annual_amount_cents"], row["balance_before_cents"], row["credit_cents"],
            row["balance_after_cents"], row["former_nirs_balance_cents"]) == (
        50_000, 480_000, 20_000, 500_000, 480_000)
    e = pub.published_entries(root)
    assert sorted(zip(e["nir"], e["kind"], e["amount_cents"])) == [
        (NEW, "annual_credit", 20_000), (OLD, "opening_balance_import", 480_000)]
    b = pl.read_parquet(Path(out.run_dir) / "balances.parquet")
    assert sorted(zip(b["nir"], b["earned_balance_cents"], b["current_nir"])) == [
        (NEW, 20_000, None), (OLD, 480_000, NEW)]  # the person: 5 000 €, at the ceiling
    again = run(root, 2025, balances=bal, as_of=dt.date(2026, 5, 3))
    assert again.manifest["counts"]["entries"] == 0  # a rerun posts nothing
    res = steps.replay(root, 2025)
    assert res.ok, res.differences


def test_explain_names_the_former_nirs_balance(nia_lake, tmp_path):
    from typer.testing import CliRunner
    from flows.cli import app
    root = _copy(nia_lake, tmp_path / "DIR")
    bal = tmp_path / "balances.csv"
    bal.write_text(f"nir,earned_balance_cents\n{OLD},480000\n")
    steps.credit(root, 2025, balances=bal, as_of=dt.date(2026, 5, 2))
    r = CliRunner().invoke(app, ["explain", NEW, "--lake", str(root), "--year", "2025"],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "4,800.00" in text or "4 800.00" in text or "4800.00" in text, text
    assert "former NIR" in text, text
    assert f"former NIR {OLD}" in text, text
    r = CliRunner().invoke(app, ["explain", OLD, "--lake", str(root), "--year", "2025"],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert f"former NIR of {NEW}" in " ".join(r.output.split()), r.output


def test_unlinked_people_are_unchanged(tmp_path):
    """No identity link: the former-NIR table is empty and the posting is as before."""
    empty = conform(pl.DataFrame(schema={"nir": pl.String}))
    f = former_nir_balances(LINKS.clear(), empty.lazy(), None, 2025, META)
    assert f.height == 0
    p = plan_year_postings(empty, amounts([(nir(1), 50_000, 500_000)]), 2025, META, former=f)
    assert p.credits["former_nirs_balance_cents"].to_list() == [None]
    assert p.credits["credit_cents"].to_list() == [50_000]


def test_explain_follows_a_nir_change_both_ways_without_a_balance(nia_lake, tmp_path):
    """An auditor on either NIR finds the other and the 31.008 line that links them (the
    former NIR, holding no balance, was 'not examined', exit 1, with no pointer)."""
    from typer.testing import CliRunner
    from flows.cli import app
    root = _copy(nia_lake, tmp_path / "DIR")
    steps.credit(root, 2025, as_of=dt.date(2026, 5, 2))
    r = CliRunner().invoke(app, ["explain", OLD, "--lake", str(root), "--year", "2025"],
                           env={"COLUMNS": "200"})
    text = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    assert f"{OLD} is a former NIR of {NEW}: S21.G00.31 block (31.008 = former NIR) from line" in text, text
    assert f"its rows count for {NEW} (cpf explain {NEW} --year 2025)" in text, text
    r = CliRunner().invoke(app, ["explain", NEW, "--lake", str(root), "--year", "2025"],
                           env={"COLUMNS": "200"})
    text = " ".join(r.output.split())
    assert f"Former NIR {OLD}: S21.G00.31 block (31.008 = former NIR) from line" in text, text
