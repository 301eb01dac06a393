"""The `cpf` command on a hand-built lake, the engine replaced by a fake (no Prefect)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows import steps
from flows.cli import app

from .conftest import BASE, FakeEngine, amounts_frame, nir

runner = CliRunner()


@pytest.fixture
def fake_engine(monkeypatch):
    eng = FakeEngine(amounts_frame(BASE))
    monkeypatch.setattr(steps, "default_compute", eng)
    return eng


def test_credit_explain_query(lake, tmp_path, fake_engine):
    bal = tmp_path / "b.csv"
    bal.write_text(f"nir,earned_balance_cents\n{nir(3)},480000\n")
    r = runner.invoke(app, ["credit", "--year", "2024", "--lake", str(lake), "--balances",
                            str(bal), "--as-of", "2025-05-02"])
    assert r.exit_code == 0, r.output
    assert "people examined" in r.output and "annual_credit" in r.output
    r = runner.invoke(app, ["credit", "--year", "2024", "--lake", str(lake),
                            "--as-of", "2025-05-02"])
    assert r.exit_code == 0, r.output
    assert "entries posted by this run" in r.output
    r = runner.invoke(app, ["explain", nir(3), "--year", "2024", "--lake", str(lake)])
    assert r.exit_code == 0, r.output
    assert "explain_months" in r.output and "opening_balance_import" in r.output
    assert "200.00" in r.output
    r = runner.invoke(app, ["query", "credits_by_category", "--lake", str(lake)])
    assert r.exit_code == 0, r.output
    assert "low_qualified" in r.output
    # a DIR without its catalog file: a usage error that names the fix (analyst pass F6)
    (lake / "cpf.duckdb").unlink()
    r = runner.invoke(app, ["query", "credits_by_category", "--lake", str(lake)])
    assert r.exit_code == 2 and "cpf catalog --lake" in r.output, r.output


def test_bad_balances_row_fails_with_line_number(lake, tmp_path, fake_engine):
    bal = tmp_path / "b.csv"
    bal.write_text(f"nir,earned_balance_cents\n{nir(3)},12.5x\n")
    r = runner.invoke(app, ["credit", "--year", "2024", "--lake", str(lake), "--balances", str(bal)])
    assert r.exit_code == 1
    assert "b.csv" in r.output and ("line 2" in r.output or ":2:" in r.output)
    assert not (lake / "CURRENT").exists()


def test_usage_errors_exit_2_with_one_line(lake, tmp_path):
    cases = [
        ["credit", "--lake", str(lake)],
        ["credit", "--year", "2024", "--lake", str(lake), "--holders", str(tmp_path / "no.csv")],
        ["credit", "--year", "abc", "--lake", str(lake)],
        ["explain", "123", "--year", "2024", "--lake", str(lake)],
        ["replay", "--year", "2024", "--lake", str(tmp_path / "empty")],
        # a mistyped DIR: refused, not created with an empty ledger published in it
        ["credit", "--year", "2024", "--lake", str(tmp_path / "typo")],
        ["credit", "--year", "2024", "--lake", str(lake), "--holders", str(tmp_path)],
        ["ingest", str(tmp_path), "--lake", "/proc/no_lake_here"],  # cannot be created
        ["ingest", str(tmp_path / "missing"), "--lake", str(lake)],
        ["nonsense"],
        # year N is credited once it is over (cpf_rules.md §1): not before or during it
        ["credit", "--year", "2027", "--lake", str(lake), "--as-of", "2026-04-20"],
        ["credit", "--year", "2026", "--lake", str(lake), "--as-of", "2026-04-20"],
        # nor dated after today: the date expires dotations (round-6 operator pass N2)
        ["credit", "--year", "2024", "--lake", str(lake), "--as-of", "2099-04-20"],
        ["run", "--year", "2024", "--lake", str(lake), "--as-of", "2099-04-20"],
    ]
    for args in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert len(lines) == 1 and "error" in lines[0], (args, r.output)
    assert not (tmp_path / "typo").exists()


def test_help_on_every_command():
    for cmd in ([], ["ingest"], ["credit"], ["run"], ["explain"], ["replay"], ["query"],
                ["flow-runs"]):
        r = runner.invoke(app, cmd + ["--help"])
        assert r.exit_code == 0 and "Usage" in r.output


def test_lake_dir_check_follows_the_lake_path_rule(tmp_path):
    """``parsers.lake.lake_path`` decides by content, never by name: ``DIR`` holding ``lake/``,
    or a folder holding lake tables itself, is a lake; an empty folder called ``lake`` is not."""
    import typer
    from flows.cli import _lake_dir

    (tmp_path / "x" / "lake").mkdir(parents=True)
    assert _lake_dir(tmp_path / "x", must_hold_lake=True) == tmp_path / "x"
    (tmp_path / "old" / "files").mkdir(parents=True)  # tables at its top (older layout)
    assert _lake_dir(tmp_path / "old", must_hold_lake=True) == tmp_path / "old"
    for empty in (tmp_path / "y", tmp_path / "x" / "lake"):
        with pytest.raises(typer.Exit) as e:
            _lake_dir(empty, must_hold_lake=True)
        assert e.value.exit_code == 2


def test_a_data_directory_named_lake_can_be_copied_and_replayed(tmp_path):
    """A DIR called ``lake`` holds its tables in ``DIR/lake/`` like any other (it used to hold
    them at its top, so a copy under another name lost its lake: replay reported the archive
    missing, and an ingestion into the copy started an empty lake whose credit reversed the
    year)."""
    import shutil
    from parsers.lake import lake_path
    samples = Path(__file__).resolve().parents[2] / "data" / "samples"
    d = tmp_path / "lake"
    r = runner.invoke(app, ["ingest", str(samples), "--lake", str(d)])
    assert r.exit_code == 0, r.output
    assert (d / "lake" / "files").is_dir() and lake_path(d) == d / "lake"
    # the warnings too, not only the quarantine (ingestion acceptance pass L1)
    assert "Warnings, by reason" in r.output and re.search(r"test_envoi\s*│\s*1\s*│", r.output)
    r = runner.invoke(app, ["credit", "--year", "2025", "--lake", str(d), "--as-of", "2026-05-02"])
    assert r.exit_code == 0, r.output
    copy = tmp_path / "copy"
    shutil.copytree(d, copy, symlinks=True)
    r = runner.invoke(app, ["replay", "--year", "2025", "--lake", str(copy)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["ingest", str(samples / "73282932000017_202512_11.dsn"),
                            "--lake", str(copy)])
    assert r.exit_code == 0, r.output
    assert re.search(r"files skipped duplicate\s*│\s*1\s*│", r.output), r.output  # known
    r = runner.invoke(app, ["credit", "--year", "2025", "--lake", str(copy), "--as-of", "2026-05-03"])
    assert r.exit_code == 0, r.output
    assert "reversal" not in r.output  # nothing changed: nothing reversed


def test_explain_story_says_esat_is_never_prorated():
    """cpf_rules.md §3: ESAT 800 € full or part time (L6323-33): the story must not state the
    ½ rule next to a 0.30 ratio; a standard person's story does."""
    from flows.cli import _derivation_story
    row = {"year": 2025, "category": "esat", "esat": True, "worked_ratio": 0.3,
           "ratio_exact": "3/10", "annual_amount_cents": 80000, "ceiling_cents": 800000,
           "credit_cents": 80000, "balance_before_cents": 0, "balance_after_cents": 80000}
    story = " ".join(_derivation_story(row))
    assert "never prorated" in story and "≥ 0.5" not in story
    std = " ".join(_derivation_story({**row, "category": "standard", "esat": False}))
    assert "≥ 0.5" in std and "never prorated" not in std


def test_balances_rows_of_accounts_already_held_are_reported(lake, tmp_path, fake_engine):
    """The contract: --balances is for accounts the ledger does not hold yet; a row for one it
    holds is not applied, and the run says how many were left out."""
    bal = tmp_path / "b.csv"
    bal.write_text(f"nir,earned_balance_cents\n{nir(3)},480000\n")
    args = ["credit", "--year", "2024", "--lake", str(lake), "--balances", str(bal),
            "--as-of", "2025-05-02"]
    assert "ignored" not in runner.invoke(app, args).output
    bal.write_text(f"nir,earned_balance_cents\n{nir(3)},100000\n")
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "--balances rows ignored (account already in the ledger)" in r.output
    assert r.output.split("account already in the ledger)")[1].split()[1] == "1", r.output


def test_run_checks_the_csv_inputs_before_ingesting(tmp_path):
    """A bad --holders row fails `cpf run` at once (exit 1, its line), before Prefect starts
    and before any DSN is ingested, without a traceback."""
    from pathlib import Path
    samples = Path(__file__).resolve().parents[2] / "data" / "samples"
    holders = tmp_path / "h.csv"
    holders.write_text("nir,low_qualified_declared_on,low_qualified_withdrawn_on\n"
                       f"{nir(1)},2024-13-01,\n")
    r = runner.invoke(app, ["run", "--year", "2025", "--dsn", str(samples), "--lake",
                            str(tmp_path / "DIR"), "--holders", str(holders), "--as-of",
                            "2026-04-20"])
    assert r.exit_code == 1, r.output
    assert "h.csv:2" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "DIR" / "lake").exists()


def test_explain_refuses_what_is_not_a_nir_as_a_usage_error(lake, fake_engine):
    """A typo is a usage error (exit 2, one line), an unknown but valid NIR a failed look-up."""
    r = runner.invoke(app, ["credit", "--year", "2024", "--lake", str(lake), "--as-of", "2025-05-02"])
    assert r.exit_code == 0, r.output
    for typo in ("ABCDEFGHIJKLM", "9999999999999"):
        r = runner.invoke(app, ["explain", typo, "--year", "2024", "--lake", str(lake)])
        assert r.exit_code == 2 and "is not a NIR" in r.output, r.output
    r = runner.invoke(app, ["explain", "1999999999998", "--year", "2024", "--lake", str(lake)])
    assert r.exit_code == 1 and "was not examined" in r.output, r.output


def test_explain_story_names_the_sans_notion_term():
    """A sans-notion person's ratio is remuneration / (2 080 × SMIC): the story says so."""
    from flows.cli import _derivation_story
    row = {"year": 2025, "category": "standard", "worked_ratio": 0.7, "ratio_exact": "7/10",
           "annual_amount_cents": 50000, "ceiling_cents": 500000, "credit_cents": 50000,
           "balance_before_cents": 0, "balance_after_cents": 50000,
           "sans_notion_remuneration_cents": 1729728, "smic_reference_cents": 2471040.0}
    story = " ".join(_derivation_story(row))
    assert "+ sans-notion remuneration 17 297.28 € / (2 080 × SMIC = 24 710.40 €)" in story
    assert "sans-notion" not in " ".join(_derivation_story({**row, "sans_notion_remuneration_cents": 0}))


def test_a_run_without_holders_or_balances_says_what_it_does(lake, tmp_path, fake_engine):
    """A first campaign without --balances starts every account from 0 € for good, one
    without any holders register credits nobody at the low-qualified rate: both said (the
    deployment's runs log them as warnings, ``steps.input_notes``); a later run carries the
    register over and says from which run."""
    flat = lambda out: " ".join(out.split())  # noqa: E731
    r = runner.invoke(app, ["credit", "--year", "2024", "--lake", str(lake),
                            "--as-of", "2025-05-02"])
    assert r.exit_code == 0, r.output
    assert "nobody is credited at the low-qualified rate" in flat(r.output)
    assert "balances: none given on a new ledger" in flat(r.output)
    holders = tmp_path / "h.csv"
    holders.write_text(f"nir,low_qualified_declared_on,low_qualified_withdrawn_on\n"
                       f"{nir(1)},2020-01-01,\n")
    r = runner.invoke(app, ["credit", "--year", "2024", "--lake", str(lake), "--holders",
                            str(holders), "--as-of", "2025-05-02"])
    assert r.exit_code == 0 and "holders:" not in r.output and "balances:" not in r.output
    r = runner.invoke(app, ["credit", "--year", "2024", "--lake", str(lake),
                            "--as-of", "2025-05-02"])
    assert r.exit_code == 0, r.output
    run = re.search(r"the file of run (\S+) is used", flat(r.output))
    assert run and (lake / "runs" / run.group(1)).is_dir(), r.output
    assert "balances:" not in r.output  # the ledger holds accounts now


def test_prefect_logs_no_traceback_for_a_failure_cpf_explains():
    """`cpf run` on a damaged lake: Prefect logged the LakeDamaged traceback twice (flow and
    subflow) before cpf's one line; an unexpected error keeps its traceback."""
    import io
    import logging

    from flows import cli
    from parsers.lake import LakeDamaged

    out = io.StringIO()
    log = logging.getLogger("test.cpf.flow_runs")
    log.addHandler(logging.StreamHandler(out))
    log.addFilter(cli._NoTracebackFor(cli._expected_failures()))
    for exc in (LakeDamaged(["a part lost"]), KeyError("bug")):
        try:
            raise exc
        except Exception:
            log.error("Encountered exception during execution: %r", exc, exc_info=True)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Encountered exception during execution: LakeDamaged")
    assert lines[1].startswith("Encountered exception during execution: KeyError")
    assert lines[2] == "Traceback (most recent call last):"


def test_explain_says_a_month_s_dsn_was_received_and_rejected(tmp_path):
    """An 'undeclared' month whose DSN came and was rejected is said so, with the cause."""
    import datetime as dt

    import polars as pl

    from flows.cli import _rejected_dsn
    from parsers.lake_schema import TABLES
    d = tmp_path / "lake" / "declarations" / "month=2025-05"
    d.mkdir(parents=True)
    pl.DataFrame([{"decl_id": "x", "siret": "1" * 14, "decl_month": dt.date(2025, 5, 1),
                   "rejected": True, "reject_reason": "invalid_date", "source_file": "/in/a.dsn"}],
                 schema=TABLES["declarations"]).write_parquet(d / "part-0.parquet")
    assert _rejected_dsn(tmp_path, "1" * 14, "2025-04 2025-05") == (
        " A DSN of 2025-05 was received and rejected (invalid_date; a.dsn, see the quarantine "
        "view).")
    assert _rejected_dsn(tmp_path, "2" * 14, "2025-05") == ""
