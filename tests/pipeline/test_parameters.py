"""Fast unit tests: parameter resolution, exact rounding, ceiling, account inputs."""

from __future__ import annotations

import polars as pl
import pytest

from parsers.account_inputs import read_balances, read_holders
from pipeline.ceiling import apply_ceiling, hour_era_credit
from pipeline.credits import prorated
from pipeline.parameters import hours_to_euro_cents, params_for_year
from pipeline.fractions import sum_fractions


def test_euro_era_amounts_and_ceilings():
    p = params_for_year(2025)
    assert (p.era, p.standard_amount_cents, p.standard_ceiling_cents) == ("euros", 50000, 500000)
    assert (p.low_qualified_amount_cents, p.low_qualified_ceiling_cents) == (80000, 800000)
    assert p.standard_amount_cents + p.boeth_supplement_cents == 80000
    assert (p.esat_amount_cents, p.esat_ceiling_cents, p.esat_prorated) == (80000, 800000, False)
    assert p.full_amount_threshold == (1, 2)
    assert not p.count_commuting_accident and not p.low_qualified_boeth_stacked
    assert p.smic_basis == "monthly_time_weighted"
    assert set(p.qualifying_stoppage_motifs) == {"02", "03", "05", "06", "09"}
    assert set(p.qualifying_suspension_motifs) == {"607", "632", "650"}


def test_smic_history_month_by_month():
    assert params_for_year(2024).smic_monthly_cents == (1165,) * 10 + (1188,) * 2
    assert params_for_year(2022).smic_monthly_cents == (1057,) * 4 + (1085,) * 3 + (1107,) * 5
    assert params_for_year(2021).smic_monthly_cents == (1025,) * 9 + (1048,) * 3
    assert params_for_year(2016).smic_monthly_cents == (967,) * 12
    assert params_for_year(2026).smic_monthly_cents == (1202,) * 12


def test_hour_era():
    p = params_for_year(2017)
    assert p.era == "hours" and p.standard_amount_cents is None
    assert (p.hour_rate_first_tier, p.hour_first_tier_cap, p.hour_rate_second_tier,
            p.hour_ceiling) == (24, 120, 12, 150)
    assert p.full_amount_threshold is None and p.rounding == "ceil_hour"
    assert hours_to_euro_cents(120) == 180000


def test_version_is_stable_and_value_sensitive():
    assert params_for_year(2025).version == params_for_year(2025).version
    assert params_for_year(2025).version != params_for_year(2024).version
    assert params_for_year(2025).as_dict()["year"] == 2025
    with pytest.raises(ValueError):
        params_for_year(2014)


@pytest.mark.parametrize("num,den,amount,expected", [
    (700, 1820, 50000, 19231),  # 192.307... -> 192.31, never 192.30
    (1, 4, 50000, 12500),  # exact: no spurious cent
    (1, 2, 50000, 50000),  # threshold reached
    (8449, 16900, 50000, 24998),
    (1, 3, 50000, 16667),
    (0, 1, 50000, 0),
])
def test_prorated_rounds_up_exactly(num, den, amount, expected):
    p = params_for_year(2025)
    # ratio = ratio12_num / (12 * ratio12_den)
    df = pl.DataFrame({"ratio12_num": [num * 12], "ratio12_den": [den]},
                      schema={"ratio12_num": pl.Int128, "ratio12_den": pl.Int128})
    assert df.select(prorated(pl.lit(amount), p)).item() == expected


def test_sum_fractions_exact_over_distinct_denominators():
    terms = pl.DataFrame({"nir": ["a", "a", "a", "b"], "num": [1, 1, 1, 3],
                          "den": [3, 6, 4, 7]},
                         schema={"nir": pl.String, "num": pl.Int128, "den": pl.Int64})
    out = {r["nir"]: r for r in sum_fractions(terms).collect().iter_rows(named=True)}
    a = out["a"]  # 1/3 + 1/6 + 1/4 = 3/4
    assert a["frac_num"] * 4 == a["frac_den"] * 3
    assert (out["b"]["frac_num"], out["b"]["frac_den"]) == (3, 7)


def test_apply_ceiling():
    amounts = pl.LazyFrame({"nir": ["a", "b", "c", "d"], "annual_amount_cents": [50000] * 4,
                            "ceiling_cents": [500000] * 4})
    balances = pl.LazyFrame({"nir": ["a", "b", "c"],
                             "earned_balance_cents": [480000, 500000, 520000]})
    out = apply_ceiling(amounts, balances).sort("nir").collect()
    assert out["credit_cents"].to_list() == [20000, 0, 0, 50000]
    assert out["balance_after_cents"].to_list() == [500000, 500000, 520000, 50000]


def test_hour_era_tiers():
    df = pl.DataFrame({"a1": [24, 24, 24, 20], "a2": [12, 12, 12, 10], "b": [0, 110, 145, 0]})
    out = df.select(hour_era_credit(pl.col("a1"), pl.col("a2"), pl.col("b"), 120, 150))
    assert out.to_series().to_list() == [24, 10 + 7, 5, 20]


def test_read_holders_reports_line_numbers(tmp_path):
    f = tmp_path / "h.csv"
    f.write_text("nir,low_qualified_declared_on,low_qualified_withdrawn_on\n"
                 "1850175123456,2023-05-10,\n"
                 "123,2023-05-10,\n"
                 "2900175123457,2023-13-01,\n"
                 "2900175123458,2023-05-01,2022-01-01\n"
                 "1850175123456,2024-01-01,\n"
                 "2900175123459,2023-05-01\n")
    df, errors = read_holders(f)
    assert df["nir"].to_list() == ["1850175123456"]
    assert [e.line_no for e in errors] == [3, 4, 5, 6, 7]


def test_read_balances_reports_line_numbers(tmp_path):
    f = tmp_path / "b.csv"
    f.write_text("nir,earned_balance_cents\n1850175123456,480000\n2900175123457,12.5\n"
                 "2900175123458,-1\n")
    df, errors = read_balances(f)
    assert df.to_dicts() == [{"nir": "1850175123456", "earned_balance_cents": 480000}]
    assert [(e.line_no, e.field) for e in errors] == [(3, "earned_balance_cents"),
                                                      (4, "earned_balance_cents")]
    bad = tmp_path / "x.csv"
    bad.write_text("nir,balance\n")
    assert read_balances(bad)[1][0].line_no == 1


def test_account_inputs_read_in_chunks_keep_line_numbers(tmp_path, monkeypatch):
    """Read a few bytes at a time (as a national file is read 64 MB at a time), a file
    with a BOM, CRLF, blank lines, quotes and a duplicate in another chunk gives the same rows
    and the same line numbers as in one piece; a bad row's NIR still counts as seen."""
    import parsers.account_inputs as ai
    f = tmp_path / "b.csv"
    f.write_bytes("\ufeffnir,earned_balance_cents\r\n1850175123456,480000\r\n\r\n"
                  "  \r\n\"2900175123457\", 12 \r\n2900175123458,-1\r\n2900175123458,5\r\n"
                  "1850175123456,7\r\n2900175123459\r\n".encode())
    whole = read_balances(f)
    monkeypatch.setattr(ai, "CHUNK_BYTES", 7)
    chunked = read_balances(f)
    assert whole[0].equals(chunked[0]) and whole[1] == chunked[1]
    assert chunked[0].rows() == [("1850175123456", 480000), ("2900175123457", 12)]
    assert [(e.line_no, e.reason) for e in chunked[1]] == [
        (6, "negative balance"), (7, "duplicate NIR (first occurrence kept)"),
        (8, "duplicate NIR (first occurrence kept)"), (9, "expected 2 fields, got 1")]
    empty = tmp_path / "e.csv"
    empty.write_bytes(b"")
    assert read_balances(empty)[1][0].field == "header"
    latin = tmp_path / "l.csv"
    latin.write_bytes("nir,earned_balance_cents\n1850175123456,é\n".encode("latin-1"))
    e = read_balances(latin)[1][0]
    assert "not UTF-8" in e.reason and e.line_no == 2


def test_account_inputs_nir_rule_overflow_guard_and_bad_bytes(tmp_path):
    """The NIR rule is S21.G00.30.001's ("13-character NIR as in DSN"): month 13 and the
    all-nines placeholder are refused; an amount beyond the overflow guard is refused (near
    2**63 it wrapped to a negative balance); a non-UTF-8 byte names its line."""
    f = tmp_path / "b.csv"
    f.write_text("nir,earned_balance_cents\n1850175123456,480000\n1851375123456,1\n"
                 "1999999999999,1\n2900175123457,9223372036854775807\n")
    df, errors = read_balances(f)
    assert df["nir"].to_list() == ["1850175123456"]
    assert [(e.line_no, e.field) for e in errors] == [
        (3, "nir"), (4, "nir"), (5, "earned_balance_cents")]
    assert "overflow guard" in errors[-1].reason
    h = tmp_path / "h.csv"
    h.write_bytes(b"nir,low_qualified_declared_on,low_qualified_withdrawn_on\n"
                  b"1850175123456,2024-01-01,\n2900175123457,2024-01-01,\xa0\n")
    df, errors = read_holders(h)
    assert [(e.line_no, "not UTF-8" in e.reason) for e in errors] == [(3, True)]
