"""The run report: its figures come from the credits, and its bytes from the data only."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.run_report import RATIO_BINS, ratio_histogram, write_report

CREDITS = pl.DataFrame({
    "worked_ratio": [0.0, 0.25, 0.5, 1.0, 2.0, None],
    "category": ["standard", "standard", "boeth", "standard", "esat", "standard"],
    "credit_cents": [0, 12_500, 80_000, 50_000, 80_000, 0],
})
MANIFEST = {
    "run_id": "r1", "year": 2025, "seq": 1,
    "inputs": {"as_of": "2026-05-02", "param_version": "p", "code_version": "c", "dsn_files": 3},
    "counts": {"examined": 6, "credited": 4, "uncreditable": 0, "entries": 4,
               "entries_by_kind": {"annual_credit": 4}},
    "totals_cents": {"credit": 222_500, "entries": 222_500,
                     "entries_by_kind": {"annual_credit": 222_500}},
}


def test_histogram_counts_every_ratio_once_clipped_to_one_and_a_half():
    counts, edges = ratio_histogram(CREDITS.lazy())
    assert len(counts) == RATIO_BINS and len(edges) == RATIO_BINS + 1
    assert sum(counts) == 5  # the null ratio is not drawn
    assert edges[0] == 0.0 and edges[-1] == 1.5  # 2.0 is clipped to 1.5
    assert counts[-1] == 1 and counts[0] == 1


def test_report_states_the_totals_and_is_byte_identical_when_redrawn(tmp_path: Path):
    a = write_report(tmp_path / "a", MANIFEST, CREDITS)
    b = write_report(tmp_path / "b", MANIFEST, CREDITS.lazy())
    page = a.read_text()
    assert "2 225.00 €" in page  # credited this year
    assert "<td>boeth</td><td>1</td><td>800.00 €</td>" in page
    for name in ("index.html", "ratio_distribution.png", "credits_by_category.png"):
        assert (a.parent / name).read_bytes() == (b.parent / name).read_bytes(), name


def test_an_hour_era_year_reports_hours_not_zero_euros(tmp_path: Path):
    hour_year = {**MANIFEST, "year": 2017,
                 "totals_cents": {"credit": 0, "entries": 0,
                                  "entries_by_kind": {"annual_credit": 0}},
                 "totals_hours": {"credit": 148, "entries_by_kind": {"annual_credit": 148}}}
    page = write_report(tmp_path, hour_year, CREDITS).read_text()
    assert "<tr><th>credited this year</th><td>148 h</td></tr>" in page
    assert "<td>annual_credit</td><td>4</td><td>148 h</td>" in page


def test_the_report_counts_the_input_set_aside(tmp_path: Path):
    """Bad input is kept and the run report counts it (DEVELOPERS.md): declarations not used
    by cause and quarantine rows by scope and reason, from the run's lake snapshots."""
    from pipeline.run_report import set_aside
    run = tmp_path / "run"
    (run / "declarations").mkdir(parents=True)
    (run / "quarantine").mkdir()
    pl.DataFrame({"current": [True, True, False, False, False],
                  "rejected": [False, False, True, False, False],
                  "envoi_is_test": [False, False, False, True, False],
                  "superseded_reason": [None, None, None, None, "replaced_declaration"],
                  "nature": ["01"] * 5}).write_parquet(run / "declarations" / "month=2025-03.parquet")
    pl.DataFrame({"scope": ["line", "line", "declaration", "warning"],
                  "reason": ["bad_enum", "bad_enum", "invalid_date", "test_envoi"]}).write_parquet(
        run / "quarantine" / "month=2025-03.parquet")
    aside = set_aside(run)
    assert aside["declarations"] == 5
    assert aside["declarations_not_used"] == {"rejected": 1, "replaced by an annule-et-remplace": 1,
                                              "test envoi": 1}
    page = write_report(tmp_path / "r", MANIFEST, CREDITS, aside).read_text()
    assert "5 declaration(s), 3 not used" in page
    assert "<td>line</td><td>bad_enum</td><td>2</td>" in page
    assert "<td>test envoi</td><td>1</td>" in page


def test_a_month_missing_a_fraction_is_said_so(tmp_path: Path):
    """A month declared in fractions (S20.G00.05.003 = 12: the first of 2) whose second has
    not arrived is not 'a DSN omitting the contracts' (dsn_format.md §3.3): the run's note
    counts it apart, and undeclared_months names the missing fraction."""
    import datetime as dt

    from flows.run_notes import fractions_missing, undeclared_note
    run = tmp_path / "runs" / "r"
    (run / "declarations").mkdir(parents=True)
    pl.DataFrame({"siret": ["A", "B", "B"], "decl_month": [dt.date(2025, 9, 1)] * 3,
                  "fraction": ["12", "12", "22"], "nature": ["01"] * 3,
                  "rejected": [False] * 3, "envoi_is_test": [False] * 3}).write_parquet(
        run / "declarations" / "month=2025-09.parquet")
    emp = pl.DataFrame({"nir": ["1", "2"], "siret": ["A", "B"], "year": [2025, 2025],
                        "months_undeclared": [1, 1], "undeclared_months": ["2025-09", "2025-09"]})
    emp.write_parquet(run / "employments.parquet")
    assert fractions_missing(run, emp.lazy()) == 1  # A lacks 2/2; B has both
    assert "1 of these establishment-months were declared in fractions" in undeclared_note(run)
    import duckdb

    from pipeline.catalog import queries
    con = duckdb.connect()
    con.register("employments", emp.with_columns(pl.lit("S").alias("siren")).to_arrow())
    con.register("declarations", pl.read_parquet(run / "declarations").to_arrow())
    got = con.execute(f"SELECT siret, dsn_filed, dsn_rejected, fractions_missing FROM "
                      f"({queries()['undeclared_months'].rstrip().rstrip(';')})").fetchall()
    assert got == [("A", True, False, "2/2"), ("B", True, False, "")], got
    # A's 2/2 came and was rejected: still missing as a usable fraction, and said rejected
    con.register("declarations", pl.concat([pl.read_parquet(run / "declarations"), pl.DataFrame(
        {"siret": ["A"], "decl_month": [dt.date(2025, 9, 1)], "fraction": ["22"],
         "nature": ["01"], "rejected": [True], "envoi_is_test": [False]})]).to_arrow())
    got = con.execute(f"SELECT siret, dsn_rejected, fractions_missing FROM "
                      f"({queries()['undeclared_months'].rstrip().rstrip(';')})").fetchall()
    assert got == [("A", True, "2/2"), ("B", False, "")], got
