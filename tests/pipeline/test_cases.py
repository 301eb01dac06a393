"""cases.yaml: each case -> real DSN (generator.builder) -> lake (parser) -> compute_year ->
apply_ceiling -> the expected credit."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scenario import ingest_case, write_inputs  # noqa: E402

from pipeline.ceiling import apply_ceiling  # noqa: E402
from pipeline.credits import compute_year  # noqa: E402

CASES = yaml.safe_load((HERE / "cases.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case, tmp_path):
    ingest_case(case, tmp_path)
    holders, balances = write_inputs(case, tmp_path)
    res = compute_year(tmp_path, int(case["year"]), holders=holders)
    assert not res.input_errors
    amounts = res.amounts.collect()
    unc = res.uncreditable.collect()
    exp = case["expect"]
    if "uncreditable" in exp:
        assert amounts.height == 0, amounts
        assert exp["uncreditable"] in unc["reason"].to_list(), unc
        return
    assert amounts.height == 1, (amounts, unc)
    row = amounts.row(0, named=True)
    if "hours" in exp:
        assert row["annual_amount_hours"] == exp["hours"], row
        return
    credited = apply_ceiling(amounts.lazy(), balances.lazy()).collect().row(0, named=True)
    want = int(Decimal(str(exp["credit"])) * 100)
    assert credited["credit_cents"] == want, {k: row[k] for k in (
        "worked_ratio", "ratio_exact", "annual_amount_cents", "category", "references",
        "months_counted", "paid_hours_h", "absence_days", "source_decl_ids")}
    assert credited["credit_cents"] >= 0
    for key in ("category", "employers_count", "establishments_count", "months_counted",
                "contracts_count"):
        if key in exp:
            assert row[key] == exp[key], row


def test_explain_lists_the_absences_behind_the_absence_days(tmp_path):
    """cpf explain's absence table (explanations.person_absences): the motif, whether
    L6323-12 counts it, the period, the months repeating it, and an annulation declared after
    it; an absence declared after the annulation stands (absences.not_cancelled)."""
    from datetime import date

    from pipeline.explanations import person_absences
    from pipeline.parameters import params_for_year

    case = next(c for c in CASES if c["name"].startswith("maternity cancelled (99) in April"))
    ingest_case(case, tmp_path)
    ab = person_absences(tmp_path, "1850175123456", 2025, params_for_year(2025))
    got = ab.select("motif", "counted", "start", "end", "declared_in", "cancelled_in").rows()
    assert got == [
        ("01", False, date(2025, 3, 1), date(2025, 5, 31), [date(2025, 3, 1)], date(2025, 4, 1)),
        ("02", True, date(2025, 3, 1), date(2025, 5, 31), [date(2025, 5, 1)], None)], got


def test_explain_contract_month_columns_round_alike(tmp_path):
    """explain's contract-month row (explanations.contract_month_detail) rounds every quantity
    to the nearest hundredth, so that paid + absence credited = counted (a truncated absence
    showed 53.91 beside 80.00 and 133.92): October 80 h then maternity, against 1 607/12 h."""
    from pipeline.parameters import params_for_year
    from pipeline.worked_time import worked_time

    case = next(c for c in CASES if c["name"].startswith("pay not based on time, October in hours"))
    ingest_case(case, tmp_path)
    wt = worked_time(tmp_path, 2025, params_for_year(2025), keep_terms=True)
    row = wt.contract_months.row(0, named=True)
    assert (row["paid_h"], row["absence_credited_h"], row["counted_h"]) == (8000, 5392, 13392), row


def test_a_shard_sees_a_register_row_filed_under_a_former_nir_of_another_bucket(tmp_path):
    """round-6 money pass H1: a shard read only its buckets' register rows, so a row under a
    former NIR hashing elsewhere was dropped (standard instead of low-qualified); and a row of
    the current NIR stands alone (M1: an old "declared, never withdrawn" row undid a
    withdrawal filed under the new NIR)."""
    import datetime as dt

    from flows.steps import credit_sharded
    from parsers.lake_settings import bucket_count
    from pipeline.lake_reads import nir_buckets

    case = next(c for c in CASES if c["name"].startswith("low-qualified declared under the NIA"))
    ingest_case(case, tmp_path)
    new, old = case["nir"], case["old_nir"]
    assert len(set(nir_buckets(tmp_path, pl.Series([new, old]))["bucket"])) == 2

    def category(rows: str, day: int) -> str:
        csv = tmp_path / f"holders{day}.csv"
        csv.write_text("nir,low_qualified_declared_on,low_qualified_withdrawn_on\n" + rows)
        out = credit_sharded(tmp_path, 2025, shards=bucket_count(tmp_path), holders=csv,
                             as_of=dt.date(2026, 5, day))
        ac = pl.read_parquet(Path(out.run_dir) / "annual_credits.parquet")
        return ac.filter(pl.col("nir") == new)["category"].item()

    assert category(f"{old},2024-01-10,\n", 1) == "low_qualified"
    assert category(f"{old},2020-01-10,\n{new},2020-01-10,2024-05-10\n", 2) == "standard"
    # a declaration under the new NIR made after the year does not hide the old one (round 7)
    assert category(f"{old},2020-01-10,\n{new},2026-02-01,\n", 3) == "low_qualified"


def test_low_qualified_rows_of_several_nirs_are_one_history():
    """R6323-3-1 read across a NIR change (credits.low_qualified_flags): the latest event
    bearing on year N decides — a declaration dated in N or before, a withdrawal before N."""
    from datetime import date

    from pipeline.credits import low_qualified_flags
    rows = {  # one person's rows, already under the current NIR (with_current_nirs)
        "old never withdrawn, new declared after N": [(date(2020, 1, 1), None),
                                                      (date(2026, 2, 1), None)],
        "withdrawn under another NIR before N": [(date(2020, 1, 1), None),
                                                 (date(2020, 1, 1), date(2024, 5, 10))],
        "withdrawn before N, declared again in N": [(date(2020, 1, 1), date(2023, 3, 1)),
                                                    (date(2025, 6, 1), None)],
        "withdrawn during N (standard from N+1)": [(date(2020, 1, 1), date(2025, 3, 1))],
    }
    frame = pl.DataFrame(
        [(name, d, w) for name, rs in rows.items() for d, w in rs], orient="row",
        schema={"nir": pl.String, "low_qualified_declared_on": pl.Date,
                "low_qualified_withdrawn_on": pl.Date})
    got = set(low_qualified_flags(frame.lazy(), 2025).collect()["nir"])
    assert got == {"old never withdrawn, new declared after N",
                   "withdrawn before N, declared again in N",
                   "withdrawn during N (standard from N+1)"}
