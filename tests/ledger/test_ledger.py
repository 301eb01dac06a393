"""Ledger, publication, replay and catalog: plain functions, hand-built frames, no Prefect."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from flows import run_notes, steps
from flows.cli import _derivation_story
from pipeline import publish as pub
from pipeline.catalog import queries
from pipeline.ledger import (LedgerCheckError, RunMeta, check_year, conform, ensure,
                             plan_year_postings)

from .conftest import AS_OF, AS_OF_2025, BASE, FakeEngine, amounts_frame, nir


def credit(root, rows, **kw):
    kw.setdefault("as_of", AS_OF)
    return steps.credit(root, 2024, compute_fn=FakeEngine(amounts_frame(rows)), **kw)


def ledger(root) -> pl.DataFrame:
    return pub.published_entries(root)


def test_first_run_posts_annual_credits_with_ceiling(lake, tmp_path):
    bal = tmp_path / "balances.csv"
    bal.write_text(f"nir,earned_balance_cents\n{nir(3)},480000\n{nir(9)},1000\n")
    out = credit(lake, BASE, balances=bal)
    e = ledger(lake)
    ac = pl.read_parquet(Path(out.run_dir) / "annual_credits.parquet")
    assert ac.filter(pl.col("nir") == nir(3))["credit_cents"].item() == 20000
    assert ac.filter(pl.col("nir") == nir(3))["balance_after_cents"].item() == 500000
    kinds = e.group_by("kind").agg(pl.len()).sort("kind").rows()
    assert kinds == [("annual_credit", 5), ("opening_balance_import", 2)]
    assert e["amount_cents"].dtype == pl.Int64
    assert out.manifest["totals_cents"]["credit"] == 50000 + 12500 + 80000 + 20000 + 80000
    assert out.run_id.startswith("2024-0001-")
    assert (lake / "cpf.duckdb").exists()
    assert (Path(out.run_dir) / "report" / "index.html").exists()
    assert (Path(out.run_dir) / "report" / "ratio_distribution.png").exists()


def test_rerun_on_unchanged_data_posts_nothing(lake, tmp_path):
    bal = tmp_path / "balances.csv"
    bal.write_text(f"nir,earned_balance_cents\n{nir(3)},480000\n")
    credit(lake, BASE, balances=bal)
    before = ledger(lake)
    out2 = credit(lake, BASE, balances=bal)
    assert out2.manifest["counts"]["entries"] == 0
    assert ledger(lake).equals(before)
    assert out2.run_id.startswith("2024-0002-")


def test_changed_amounts_post_adjustment_and_reversal(lake):
    credit(lake, BASE)
    changed = [list(r) for r in BASE]
    changed[1][3] = 20000  # late recall: more time → +7500
    changed[2][3] = 50000  # low-qualified declaration withdrawn as erroneous → −30000
    changed = [tuple(r) for r in changed if r[0] != nir(4)]  # nir(4) vanished (A&R) → reversal
    out = credit(lake, changed)
    new = pl.read_parquet(Path(out.run_dir) / "entries.parquet").sort("nir")
    assert new.select("nir", "kind", "amount_cents").rows() == [
        (nir(1), "adjustment_credit", 7500),
        (nir(2), "reversal", -30000),
        (nir(4), "reversal", -80000),
    ]
    totals = (ledger(lake).filter(pl.col("year") == 2024).group_by("nir")
              .agg(pl.col("amount_cents").sum()).sort("nir"))
    assert dict(totals.rows())[nir(4)] == 0
    # and a third run on the same data posts nothing
    assert credit(lake, changed).manifest["counts"]["entries"] == 0


def test_later_year_sees_earlier_year_in_balance_before(lake):
    credit(lake, BASE)
    rows = [(r[0], 1.0, r[2], r[3], r[4]) for r in BASE]
    out = steps.credit(lake, 2025, compute_fn=FakeEngine(
        amounts_frame(rows).with_columns(pl.lit(2025, pl.Int32).alias("year"))), as_of=AS_OF_2025)
    ac = pl.read_parquet(Path(out.run_dir) / "annual_credits.parquet")
    assert ac.filter(pl.col("nir") == nir(1))["balance_before_cents"].item() == 12500
    # the 2024 rerun must not count 2024 itself in its balance before
    again = credit(lake, BASE)
    assert again.manifest["counts"]["entries"] == 0


def test_recrediting_an_earlier_year_after_a_later_one(lake, tmp_path):
    """Balances are in activity-year order: re-crediting 2024 after 2025 caps 2024 against what
    stood before 2024, not against 2025's credit (that reversed 200 € rightly credited), and a
    late INCREASE of 2024 is a crediting made today, capped by today's room."""
    bal = tmp_path / "balances.csv"
    bal.write_text(f"nir,earned_balance_cents\n{nir(3)},480000\n")
    y2024 = [(nir(3), 1.0, "standard", 50000, 500000), (nir(5), 0.5, "standard", 50000, 500000)]
    credit(lake, y2024, balances=bal)  # nir(3): 4 800 + 200 = 5 000 (ceiling hit)
    y2025 = amounts_frame([(nir(3), 1.0, "low_qualified", 80000, 800000),  # declared in 2025
                           (nir(5), 1.0, "standard", 50000, 500000)]) \
        .with_columns(pl.lit(2025, pl.Int32).alias("year"))
    steps.credit(lake, 2025, compute_fn=FakeEngine(y2025), as_of=AS_OF_2025)  # nir(3): 5 800
    # unchanged 2024 rerun: nothing posted, the 2024 rows show the balances of their time
    out = credit(lake, y2024, balances=bal)
    assert out.manifest["counts"]["entries"] == 0
    ac = pl.read_parquet(Path(out.run_dir) / "annual_credits.parquet").sort("nir")
    assert ac.select("balance_before_cents", "credit_cents", "balance_after_cents").rows() == [
        (480000, 20000, 500000), (0, 50000, 50000)]
    # a late correction raises nir(3)'s 2024 amount (no room left then, none today: 5 800 ≥
    # 5 000) and nir(5)'s (room today: 5 000 − 1 000): only nir(5) gets more, in full
    late = [(nir(3), 1.0, "standard", 60000, 500000), (nir(5), 0.8, "standard", 80000, 500000)]
    out = credit(lake, late, balances=bal)
    new = pl.read_parquet(Path(out.run_dir) / "entries.parquet")
    assert new.select("nir", "kind", "amount_cents").rows() == [(nir(5), "adjustment_credit", 30000)]
    # once 2025 left little room, a late increase is cut to it (5 000 ceiling, 4 990 held)
    y2025b = amounts_frame([(nir(5), 1.0, "standard", 50000, 500000)]) \
        .with_columns(pl.lit(2025, pl.Int32).alias("year"))
    bal2 = tmp_path / "b2.csv"
    bal2.write_text(f"nir,earned_balance_cents\n{nir(7)},449000\n")
    credit(lake, late + [(nir(7), 0.1, "standard", 5000, 500000)], balances=bal2)
    steps.credit(lake, 2025, compute_fn=FakeEngine(pl.concat([y2025b, amounts_frame(
        [(nir(7), 1.0, "standard", 50000, 500000)]).with_columns(
        pl.lit(2025, pl.Int32).alias("year"))])), as_of=AS_OF_2025)  # nir(7): 4 540 + 460 = 5 000
    out = credit(lake, late + [(nir(7), 0.3, "standard", 15000, 500000)], balances=bal2)
    new = pl.read_parquet(Path(out.run_dir) / "entries.parquet")
    assert new.filter(pl.col("nir") == nir(7)).height == 0  # no room today
    row = pl.read_parquet(Path(out.run_dir) / "annual_credits.parquet") \
        .filter(pl.col("nir") == nir(7)).row(0, named=True)
    assert (row["balance_before_cents"], row["credit_cents"]) == (449000, 5000)
    # the row states the second cap: the ceiling alone gives min(150, 5 000 − 4 490) = 150 €,
    # today's room withheld 100 € of it (an auditor reads min(...) = 150 − 100 = credit 50)
    assert row["late_increase_withheld_cents"] == 10000
    assert ("late increases withheld by the ceiling: 1 person(s), 100.00 € found by this run "
            "and not paid") in " ".join(t for _, t in run_notes.run_notes(out.run_dir))
    story = " ".join(_derivation_story(row))
    assert "annual amount 150.00 € = the category's amount × the ratio, rounded up" in story
    assert "(the category's full amount)" in " ".join(_derivation_story(
        {**row, "worked_ratio": 1.0, "ratio12_num": 12, "ratio12_den": 1}))
    assert "= 150.00 €, of which 100.00 € found after later years were credited exceeds " \
           "today's room under the ceiling" in story and "credit 50.00 €" in story
    assert pl.read_parquet(Path(out.run_dir) / "annual_credits.parquet").filter(
        pl.col("nir") != nir(7))["late_increase_withheld_cents"].null_count() > 0  # else null
    e = ledger(lake)
    assert e.filter((pl.col("nir") == nir(7)) & (pl.col("sub_ledger") == "earned"))[
        "amount_cents"].sum() == 500000


@pytest.mark.parametrize("point", ["after_run_dir", "before_current", "after_current"])
def test_failure_between_entries_written_and_published(lake, monkeypatch, point):
    first = credit(lake, BASE)
    cur_before = (lake / "CURRENT").read_bytes()
    changed = [(r[0], r[1], r[2], r[3] + 100, r[4]) for r in BASE]
    monkeypatch.setenv("CPF_FAIL_AT", point)
    with pytest.raises(pub.PublishError):
        credit(lake, changed)
    monkeypatch.delenv("CPF_FAIL_AT")
    from typer.testing import CliRunner

    from flows.cli import app
    stale_query = " ".join(CliRunner().invoke(
        app, ["query", "credits_by_category", "--lake", str(lake)]).output.split())
    if point != "after_current":
        assert "latest published run" not in stale_query, stale_query
        assert (lake / "CURRENT").read_bytes() == cur_before
        assert ledger(lake).height == first.manifest["counts"]["ledger_entries_after"]
        con = duckdb.connect(str(lake / "cpf.duckdb"), read_only=True)
        assert con.execute("select count(*) from ledger_entries").fetchone()[0] == 5
        con.close()
    # the rerun converges: same result as an uninterrupted run
    out = credit(lake, changed)
    e = ledger(lake)
    assert e.filter(pl.col("kind") == "adjustment_credit").height == 5  # posted exactly once
    if point == "after_current":  # published but the catalog was stale: the rerun rebuilt it
        assert out.manifest["counts"]["entries"] == 0
        assert "latest published run is" in stale_query, stale_query  # not served as today's
    sums = e.group_by("nir").agg(pl.col("amount_cents").sum()).sort("nir")
    assert sums["amount_cents"].to_list() == [r[3] + 100 for r in sorted(BASE)]
    leftovers = [p.name for p in (lake / "runs").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert not pub.verify_ledger(lake)
    assert out.run_id in json.loads((lake / "CURRENT").read_text())["latest_by_year"].values()


def test_same_inputs_give_byte_identical_ledger(tmp_path):
    from .conftest import make_lake
    shas = []
    for k in range(2):
        root = tmp_path / f"d{k}"
        root.mkdir()
        make_lake(root)
        out = credit(root, BASE)
        shas.append((out.run_id, out.manifest["files_sha256"]))
    assert shas[0] == shas[1]


def test_run_records_its_dsn_inputs_as_a_digest_and_a_snapshot_file(lake, monkeypatch):
    """The DSN inputs (tens of millions nationally) are a count + digest in the manifest (and so
    in the run id) and a sorted Parquet list in the snapshot; a lake changed during the run is
    refused at staging."""
    out = credit(lake, BASE)
    inputs = out.manifest["inputs"]
    listed = pl.read_parquet(Path(out.run_dir) / pub.DSN_INPUTS)
    assert "dsn_sha256" not in inputs and inputs["dsn_files"] == listed.height > 0
    assert listed["file_sha256"].is_sorted()
    assert inputs["dsn_digest"] == pub.checksums_digest(listed["file_sha256"].to_list())
    assert out.manifest["files_sha256"][pub.DSN_INPUTS] == pub.sha256_file(
        Path(out.run_dir) / pub.DSN_INPUTS)
    real = pub.sorted_file_checksums
    calls = []

    def changed_after_prepare(root):  # first call: prepare; later: staging sees one more file
        calls.append(1)
        yield from real(root)
        if len(calls) > 1:
            yield pl.DataFrame({"file_sha256": ["f" * 64]})

    monkeypatch.setattr(pub, "sorted_file_checksums", changed_after_prepare)
    with pytest.raises(pub.PublishError, match="changed during the run"):
        credit(lake, [(r[0], r[1], r[2], r[3] + 1, r[4]) for r in BASE])


def _fake_ingest(paths, root):
    """Re-ingestion stand-in: rebuild the fixture lake (the real one parses the archive)."""
    from .conftest import make_lake
    make_lake(Path(root))


def test_replay_identical_then_detects_tampering(lake):
    eng = FakeEngine(amounts_frame(BASE))
    steps.credit(lake, 2024, compute_fn=eng, as_of=AS_OF)
    _archive_fixture_files(lake)
    res = steps.replay(lake, 2024, compute_fn=eng, ingest_fn=_fake_ingest)
    assert res.ok, res.differences
    # recomputation with different results is reported
    other = FakeEngine(amounts_frame([(r[0], r[1], r[2], r[3] + 1, r[4]) for r in BASE]))
    res = steps.replay(lake, 2024, compute_fn=other, ingest_fn=_fake_ingest)
    assert not res.ok and any("posted but not recomputed" in d for d in res.differences)
    # tamper with one posted entry
    run_id = pub.latest_run_for_year(lake, 2024)
    p = pub.entries_path(lake, run_id)
    df = pl.read_parquet(p)
    df = df.with_columns(pl.when(pl.col("nir") == nir(0)).then(99999)
                         .otherwise(pl.col("amount_cents")).alias("amount_cents"))
    df.write_parquet(p)
    res = steps.replay(lake, 2024, compute_fn=eng, ingest_fn=_fake_ingest)
    assert not res.ok
    assert any("tampered" in d for d in res.differences)
    assert any("amount_cents=99999" in d for d in res.differences)
    # and the next run refuses to post on a tampered ledger, sharded or not
    with pytest.raises(steps.InputError):
        credit(lake, BASE)
    prep = steps.prepare(lake, 2024, as_of=AS_OF)
    with pytest.raises(steps.InputError, match="tampered"):
        steps.prepare_posting(prep)


def test_replay_names_a_changed_archived_csv_input(lake, tmp_path):
    bal = tmp_path / "balances.csv"
    bal.write_text(f"nir,earned_balance_cents\n{nir(3)},480000\n")
    eng = FakeEngine(amounts_frame(BASE))
    out = steps.credit(lake, 2024, compute_fn=eng, balances=bal, as_of=AS_OF)
    _archive_fixture_files(lake)
    archived = pub.archived_input(lake, out.manifest["inputs"]["balances_sha256"])
    archived.write_text(f"nir,earned_balance_cents\n{nir(3)},490000\n")
    res = steps.replay(lake, 2024, compute_fn=eng, ingest_fn=_fake_ingest)
    assert not res.ok and (f"archived input {archived} (balances) does not match its sha256: "
                           "changed since the run") in res.differences


def _archive_fixture_files(lake):
    for sha in pub.lake_file_checksums(lake)["file_sha256"]:  # no real files to archive
        p = lake / "archive" / "dsn" / sha
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")


def test_replay_detects_a_changed_snapshot_and_a_run_dropped_from_current(lake, tmp_path):
    """Found by an acceptance pass: replay recomputed entries and annual_credits only, so an
    altered balances snapshot, or a last run removed from CURRENT, passed."""
    import shutil
    eng = FakeEngine(amounts_frame(BASE))
    steps.credit(lake, 2024, compute_fn=eng, as_of=AS_OF)
    steps.credit(lake, 2024, compute_fn=FakeEngine(amounts_frame(BASE[:-1])), as_of=AS_OF)
    _archive_fixture_files(lake)
    assert steps.replay(lake, 2024, compute_fn=FakeEngine(amounts_frame(BASE[:-1])),
                        ingest_fn=_fake_ingest).ok
    # the balances snapshot altered: its sha256 in the manifest no longer matches
    bad = tmp_path / "bal"
    shutil.copytree(lake, bad)
    run_id = pub.latest_run_for_year(bad, 2024)
    p = pub.run_dir(bad, run_id) / "balances.parquet"
    pl.read_parquet(p).with_columns(pl.col("earned_balance_cents") + 10000).write_parquet(p)
    res = steps.replay(bad, 2024, compute_fn=FakeEngine(amounts_frame(BASE[:-1])),
                       ingest_fn=_fake_ingest)
    assert not res.ok and any("balances.parquet does not match" in d for d in res.differences)
    assert any(d.startswith("balances: ") for d in res.differences)  # and the sums disagree
    # the last run dropped from CURRENT: replaying 2024 now checks the first run, and says so
    cur = json.loads((lake / "CURRENT").read_text())
    dropped = cur["published"][-1]["run_id"]
    cur["published"] = cur["published"][:-1]
    cur["latest_by_year"]["2024"] = cur["published"][-1]["run_id"]
    cur["run_id"] = cur["published"][-1]["run_id"]
    (lake / "CURRENT").write_text(json.dumps(cur))
    res = steps.replay(lake, 2024, compute_fn=eng, ingest_fn=_fake_ingest)
    assert not res.ok and any(dropped in d and "not listed in CURRENT" in d
                              for d in res.differences)


def test_replay_names_a_run_erased_from_the_middle_of_the_journal(lake):
    """Multi-year acceptance pass: a middle run erased from CURRENT, runs/ and ledger/ was
    reported as row differences of the next run; each manifest names the run before it."""
    import shutil
    eng = FakeEngine(amounts_frame(BASE))
    runs = [steps.credit(lake, 2024, compute_fn=eng, as_of=AS_OF).run_id for _ in range(3)]
    _archive_fixture_files(lake)
    cur = json.loads((lake / "CURRENT").read_text())
    cur["published"] = [r for r in cur["published"] if r["run_id"] != runs[1]]
    (lake / "CURRENT").write_text(json.dumps(cur))
    shutil.rmtree(pub.run_dir(lake, runs[1]))
    shutil.rmtree(pub.entries_path(lake, runs[1]).parent)
    res = steps.replay(lake, 2024, compute_fn=eng, ingest_fn=_fake_ingest)
    assert not res.ok and (f"run {runs[2]} was published after {runs[1]}, which CURRENT does "
                           f"not list before it ({runs[0]}): a run was removed from the "
                           "journal") in res.differences


def test_runs_view_keeps_every_runs_metadata(lake):
    """Found by an acceptance pass: the runs table lost the as-of date, versions and entry
    count of every run but the latest (CURRENT does not keep them; the manifests do)."""
    credit(lake, BASE)
    out = credit(lake, BASE[:-1], as_of=AS_OF + dt.timedelta(days=1))
    runs = pl.read_parquet(Path(out.run_dir) / "runs.parquet")
    assert runs.height == 2 and runs.null_count().sum_horizontal().item() == 0, runs
    assert runs["as_of"].to_list() == [AS_OF, AS_OF + dt.timedelta(days=1)]
    assert runs["n_entries"].to_list() == [len(BASE), 1]


def test_balance_assertion_fails_on_broken_ledger():
    meta = RunMeta(run_id="r1", code_version="c")
    amounts = amounts_frame(BASE)
    posting = plan_year_postings(conform(pl.DataFrame(schema=dict(
        __import__("pipeline.ledger", fromlist=["x"]).ENTRY_SCHEMA))), amounts, 2024, meta)
    assert posting.errors == []
    all_entries = posting.entries
    # a duplicated posting: ledger balance no longer equals balance_after
    broken = pl.concat([all_entries, all_entries.head(1).with_columns(
        pl.lit("dup-id").alias("entry_id"))])
    errors = check_year(broken, posting.credits, 2024)
    assert any("!= credit" in e for e in errors)
    # a credit above the ceiling
    bad_credits = posting.credits.with_columns(
        (pl.col("ceiling_cents") + 1).alias("balance_after_cents"),
        (pl.col("ceiling_cents") + 1).alias("credit_cents"))
    errors = check_year(all_entries, bad_credits, 2024)
    assert any("above ceiling" in e for e in errors)
    with pytest.raises(LedgerCheckError):
        ensure(errors)


def test_readonly_duckdb_connection_does_not_block_publish(lake):
    credit(lake, BASE)
    analyst = duckdb.connect(str(lake / "cpf.duckdb"), read_only=True)
    n_old = analyst.execute("select count(*) from ledger_entries").fetchone()[0]
    changed = [(r[0], r[1], r[2], r[3] + 1, r[4]) for r in BASE]
    out = credit(lake, changed)  # must not block nor fail
    assert out.manifest["counts"]["entries"] == 5
    assert analyst.execute("select count(*) from ledger_entries").fetchone()[0] == n_old
    analyst.close()
    fresh = duckdb.connect(str(lake / "cpf.duckdb"), read_only=True)
    assert fresh.execute("select count(*) from ledger_entries").fetchone()[0] == n_old + 5
    fresh.close()


def test_catalog_views_follow_contract_and_queries_run(lake, tmp_path):
    rows = BASE + [(nir(5), 1.0, "low_qualified", 80000, 800000)]
    bal = tmp_path / "b.csv"
    bal.write_text(f"nir,earned_balance_cents\n{nir(0)},500000\n")
    credit(lake, rows, balances=bal)
    steps.credit(lake, 2025, compute_fn=FakeEngine(amounts_frame(rows).with_columns(
        pl.lit(2025, pl.Int32).alias("year"))), as_of=AS_OF_2025)
    con = duckdb.connect(str(lake / "cpf.duckdb"), read_only=True)
    desc = {r[0]: r[1] for r in con.execute("describe annual_credits").fetchall()}
    assert desc["nir"] == "VARCHAR" and desc["year"] == "INTEGER"
    assert desc["worked_ratio"] == "DOUBLE" and desc["credit_cents"] == "BIGINT"
    q = {r[0]: r[1] for r in con.execute("describe quarantine").fetchall()}
    assert q["line_no"] == "BIGINT" and q["rubrique"] == "VARCHAR"
    assert "earned_balance_cents" in {r[0] for r in con.execute("describe balances").fetchall()}
    assert con.execute("select count(*) from ledger_entries").fetchone()[0] > 0
    results = {}
    for name, sql in queries().items():
        results[name] = con.execute(sql).fetchall()
    con.close()
    assert set(results) >= {"credits_by_category", "credits_by_hiring_month",
                            "ratio_distribution", "people_at_ceiling", "totals_by_employer",
                            "quarantine_by_employer", "year_over_year", "low_qualified_by_year",
                            "undeclared_months"}
    assert [r[:3] for r in results["low_qualified_by_year"]] == [(2024, 2, 160000),
                                                                 (2025, 2, 160000)]
    capped = {(r[0], r[1]) for r in results["people_at_ceiling"]}  # nir(0): 5 000 before
    assert (2024, nir(0)) in capped and all(r[5] < r[4] for r in results["people_at_ceiling"])
    assert results["quarantine_by_employer"][0][:3] == ("123456780", "invalid_date", 1)
    assert results["totals_by_employer"]
    assert results["credits_by_hiring_month"]
    assert results["year_over_year"][-1][4] is not None  # 2025 rows see 2024
    assert all(r[6] is None for r in results["year_over_year"] if r[0] == 2024)  # first year
    assert results["undeclared_months"] == []  # every month under contract is declared


def test_catalog_paths_are_absolute(lake):
    credit(lake, BASE)
    con = duckdb.connect(str(lake / "cpf.duckdb"), read_only=True)
    sql = con.execute("select sql from duckdb_views() where view_name='annual_credits'").fetchone()[0]
    con.close()
    assert str(lake.resolve()) in sql


def test_a_copied_dir_gets_its_own_catalog(lake, tmp_path):
    """A copy's catalog read the ORIGINAL's files, silently: cpf query refuses it until
    cpf catalog rebuilds it (posting nothing)."""
    from typer.testing import CliRunner

    from flows.cli import app
    credit(lake, BASE)
    copy = tmp_path / "copy"
    shutil.copytree(lake, copy)
    r = CliRunner().invoke(app, ["query", "credits_by_category", "--lake", str(copy)])
    assert r.exit_code == 1 and "cpf catalog --lake" in " ".join(r.output.split())
    entries = sorted(p.name for p in (copy / "ledger" / "entries").iterdir())
    r = CliRunner().invoke(app, ["catalog", "--lake", str(copy)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (copy / "ledger" / "entries").iterdir()) == entries
    con = duckdb.connect(str(copy / "cpf.duckdb"), read_only=True)
    info = con.execute("select lake_dir, years from catalog_info").fetchone()
    sql = con.execute("select sql from duckdb_views() where view_name='annual_credits'").fetchone()[0]
    con.close()
    assert info == (str(copy.resolve()), [2024]) and str(lake.resolve()) not in sql
    r = CliRunner().invoke(app, ["query", "credits_by_category", "--lake", str(copy)])
    assert r.exit_code == 0, r.output


# --- hour era (2015-2018) and the 1 January 2019 conversion (décret 2018-1153) -----------------

def hour_amounts(rows: list[tuple], year: int) -> pl.DataFrame:
    """rows: (nir, hours at 24 h/year, hours at 12 h/year) as pipeline.credits gives them."""
    from pipeline.parameters import params_for_year
    return pl.DataFrame(rows, schema={"nir": pl.String, "annual_amount_hours": pl.Int64,
                                      "annual_amount_hours_second_tier": pl.Int64},
                        orient="row").with_columns(
        pl.lit(year, pl.Int32).alias("year"), pl.lit(1.0).alias("worked_ratio"),
        pl.lit("standard").alias("category"), pl.lit(None, pl.Int64).alias("annual_amount_cents"),
        pl.lit(None, pl.Int64).alias("ceiling_cents"), pl.lit(150, pl.Int64).alias("ceiling_hours"),
        pl.lit(params_for_year(year).version).alias("param_version"),
        pl.lit(["d1"]).alias("source_decl_ids"))


def test_hour_era_then_2019_posts_an_explicit_conversion(lake):
    from pipeline.ledger import HOURS, HOUR_TO_EURO_CONVERSION
    run = lambda year, df: steps.credit(lake, year, compute_fn=FakeEngine(df),  # noqa: E731
                                        as_of=dt.date(year + 1, 5, 2))
    # nir(0): 24 h a year from 2015 to 2018 (96 h); nir(1): 20 h in 2017 only (80 % all year)
    for year in (2015, 2016, 2017, 2018):
        rows = [(nir(0), 24, 12)] + ([(nir(1), 20, 10)] if year == 2017 else [])
        out = run(year, hour_amounts(rows, year))
    ac = pl.read_parquet(Path(out.run_dir) / "annual_credits.parquet")
    assert ac.filter(pl.col("nir") == nir(0))["balance_after_hours"].item() == 96
    e = ledger(lake)
    assert e.filter(pl.col("sub_ledger") == HOURS)["amount_hours"].sum() == 96 + 20
    assert e["amount_cents"].sum() == 0  # nothing in euros before 2019
    # the run's summary counts in hours, not 0.00 € (2018: nir(0) 24 h)
    assert out.manifest["counts"]["credited"] == 1
    assert out.manifest["totals_hours"] == {"credit": 24, "entries_by_kind": {"annual_credit": 24}}
    # a rerun of 2017 on unchanged data posts nothing (hours are diffed like cents)
    assert run(2017, hour_amounts([(nir(0), 24, 12), (nir(1), 20, 10)], 2017)) \
        .manifest["counts"]["entries"] == 0
    # 2019: nir(0) holds 96 h = 1 440 €, nir(2) is new; standard 500 € / 5 000 €
    amounts = amounts_frame([(nir(0), 1.0, "standard", 50000, 500000),
                             (nir(2), 1.0, "standard", 50000, 500000)]) \
        .with_columns(pl.lit(2019, pl.Int32).alias("year"))
    out = run(2019, amounts)
    e = ledger(lake)
    conv = e.filter(pl.col("kind") == HOUR_TO_EURO_CONVERSION)
    earned_leg = conv.filter(pl.col("sub_ledger") == "earned").sort("nir")
    assert earned_leg["nir"].to_list() == [nir(0), nir(1)]
    assert earned_leg["amount_cents"].to_list() == [96 * 1500, 20 * 1500]
    assert earned_leg["year"].unique().to_list() == [2019]
    from pipeline.parameters import params_for_year
    assert earned_leg["param_version"].unique().to_list() == [params_for_year(2019).version]
    assert all("décret 2018-1153" in s for s in earned_leg["source"].to_list())
    hours_leg = conv.filter(pl.col("sub_ledger") == HOURS).sort("nir")
    assert hours_leg["amount_hours"].to_list() == [-96, -20]
    # the euro ceiling applies to the converted balance
    ac = pl.read_parquet(Path(out.run_dir) / "annual_credits.parquet").sort("nir")
    row = ac.filter(pl.col("nir") == nir(0)).row(0, named=True)
    assert (row["balance_before_cents"], row["credit_cents"], row["balance_after_cents"]) == \
        (144000, 50000, 194000)
    bal = pl.read_parquet(Path(out.run_dir) / "balances.parquet").sort("nir")
    assert bal.filter(pl.col("nir") == nir(0))["earned_hours"].item() == 0
    assert bal.filter(pl.col("nir") == nir(1))["earned_balance_cents"].item() == 30000
    assert out.manifest["counts"]["entries_by_kind"][HOUR_TO_EURO_CONVERSION] == 4
    # idempotent: a rerun of 2019, and the next year, convert nothing again
    assert run(2019, amounts).manifest["counts"]["entries"] == 0
    out = run(2020, amounts.with_columns(pl.lit(2020, pl.Int32).alias("year")))
    assert HOUR_TO_EURO_CONVERSION not in out.manifest["counts"]["entries_by_kind"]
    # an auditor replaying 2019 gets the conversion back byte for byte
    for sha in pub.lake_file_checksums(lake)["file_sha256"]:  # the fixture lake has no real files to archive
        (lake / "archive" / "dsn").mkdir(parents=True, exist_ok=True)
        (lake / "archive" / "dsn" / sha).write_text("x")
    res = steps.replay(lake, 2019, compute_fn=FakeEngine(amounts), ingest_fn=_fake_ingest)
    assert res.ok, res.differences
    # the catalog exposes the kind and the hour column
    con = duckdb.connect(str(lake / "cpf.duckdb"), read_only=True)
    kinds = {k for (k,) in con.execute("select distinct kind from ledger_entries").fetchall()}
    assert {"annual_credit", HOUR_TO_EURO_CONVERSION} <= kinds
    assert con.execute("select sum(amount_hours) from ledger_entries where sub_ledger = "
                       "'earned_hours'").fetchone()[0] == 0
    cols = {c for (c,) in con.execute("select column_name from (describe balances)").fetchall()}
    assert {"nir", "earned_balance_cents", "earned_hours"} <= cols
    con.close()


def test_hour_era_ceiling_tiers():
    """24 h/year to 120 h, then 12 h/year up to 150 h (hour_era_credit on the hour sub-ledger)."""
    meta = RunMeta(run_id="r1", code_version="c", param_version="p")
    from pipeline.ledger import HOURS
    hist = conform(pl.DataFrame({"run_id": ["r0"], "nir": [nir(0)], "year": [2017],
                                 "kind": ["opening_balance_import"], "sub_ledger": [HOURS],
                                 "amount_cents": [0], "amount_hours": [0], "entry_id": ["x"]})
                   .with_columns(pl.lit("annual_credit").alias("kind"),
                                 pl.lit(110).alias("amount_hours")))
    p = plan_year_postings(hist, hour_amounts([(nir(0), 24, 12)], 2018), 2018, meta)
    assert not p.errors
    # 10 h at 24 h/year fill the first tier; the other 14 h are earned at half rate: 7 h
    assert p.credits["credit_hours"].to_list() == [17]
    # re-crediting 2017 (24 h) after 2018 brought the account to 150 h: the tiers apply to
    # what stood before 2017, so nothing changes (it used to reverse 12 h)
    later = conform(pl.concat([hist.with_columns(pl.lit(24).alias("amount_hours"),
                                                 pl.lit("e17").alias("entry_id")),
                               hist.with_columns(pl.lit(2018, pl.Int32).alias("year"),
                                                 pl.lit(126).alias("amount_hours"),
                                                 pl.lit("e18").alias("entry_id"))]))
    p = plan_year_postings(later, hour_amounts([(nir(0), 24, 12)], 2017), 2017, meta)
    assert not p.errors and p.entries.height == 0
    assert p.credits.select("balance_before_hours", "credit_hours").rows() == [(0, 24)]


def test_lake_tables_are_snapshotted_per_month_and_unchanged_months_are_linked(lake):
    """declarations/ and quarantine/ of a snapshot: one canonical file per lake month; the
    next run links the months whose lake partition did not change (same inode, no re-read)
    and rewrites the others; the catalog views read every month."""
    from parsers.lake_schema import TABLES
    base = lake / "lake" / "declarations"
    flat = pl.read_parquet(base / "part-test.parquet")
    (base / "part-test.parquet").unlink()
    for (month,), g in flat.group_by("decl_month"):  # the lake's month partitions
        (base / f"month={month:%Y-%m}").mkdir()
        g.write_parquet(base / f"month={month:%Y-%m}" / "part-test.parquet")
    first = Path(credit(lake, BASE).run_dir)
    names = sorted(p.name for p in (first / "declarations").iterdir())
    assert names == ["month=2024-01.parquet", "month=2024-02.parquet", "month=none.parquet"]
    late = flat.head(1).with_columns(pl.lit("decl9").alias("decl_id"),
                                     pl.lit(dt.date(2024, 2, 1)).alias("decl_month"))
    late.write_parquet(base / "month=2024-02" / "part-late.parquet")  # a later commit's part
    files = lake / "lake" / "files"
    pl.read_parquet(files / "part-test.parquet").head(1).with_columns(
        pl.lit("9" * 64).alias("file_sha256"), pl.lit("late").alias("batch_id")
    ).write_parquet(files / "part-late.parquet")
    second = Path(credit(lake, BASE + [(nir(7), 1.0, "standard", 50000, 500000)]).run_dir)
    ino = lambda run, m: (run / "declarations" / f"month={m}.parquet").stat().st_ino  # noqa
    assert ino(second, "2024-01") == ino(first, "2024-01")  # linked, not rewritten
    assert ino(second, "2024-02") != ino(first, "2024-02")
    got = pl.concat([pl.read_parquet(f) for f in pub.snapshot_table_files(second,
                                                                          "declarations")])
    whole = pub.declarations_rows(pl.scan_parquet(list(base.rglob("*.parquet")),
                                                  schema=TABLES["declarations"],
                                                  missing_columns="insert",
                                                  extra_columns="ignore"))
    assert got.sort("decl_id").equals(whole) and "decl9" in got["decl_id"].to_list()
    m = pub.read_manifest(lake, second.name)["files_sha256"]
    assert m["declarations/month=2024-01.parquet"] == pub.sha256_file(
        second / "declarations" / "month=2024-01.parquet")
    con = duckdb.connect(str(lake / "cpf.duckdb"), read_only=True)
    assert con.execute("select count(*) from declarations").fetchone()[0] == whole.height
    assert con.execute("select count(*) from quarantine").fetchone()[0] == 1
    con.close()


def test_file_checksums_sorted_range_by_range_are_the_sorted_list(tmp_path, monkeypatch):
    """A national year's 24 M checksums are sorted a hex range at a time: the chunks, end to
    end, are the unique sorted list, and give the digest of the list sorted at once."""
    import hashlib
    from .conftest import write_table
    shas = [hashlib.sha256(str(i % 40).encode()).hexdigest() for i in range(50)]  # 10 repeated
    write_table(tmp_path, "files", [{"file_sha256": s, "batch_id": "test"} for s in shas])
    whole = sorted(set(shas))
    monkeypatch.setattr(pub, "CHECKSUMS_PER_PASS", 6)
    chunks = list(pub.sorted_file_checksums(tmp_path))
    assert len(chunks) > 3
    assert pl.concat(chunks)["file_sha256"].to_list() == whole
    assert pub.lake_inputs_digest(tmp_path) == (40, pub.checksums_digest(whole))


def test_a_year_is_credited_once_it_is_over(lake):
    """cpf_rules.md §1: year N is credited in the campaign of N+1. The CLI refuses it as a
    usage error; the steps (a deployment, an API caller) refuse it too, nothing written."""
    with pytest.raises(steps.InputError, match="not over"):
        steps.credit(lake, 2025, compute_fn=FakeEngine(amounts_frame(BASE)),
                     as_of=dt.date(2025, 12, 31))
    assert pub.read_current(lake)["published"] == []


def test_a_publication_retried_after_the_run_dir_moved_resumes_from_it(lake, monkeypatch):
    """operator acceptance pass F4: the flow's publish retry (campaign.publish_task) passes the
    moved run directory as the staged one; publish_run deleted it as a leftover, then failed
    on the staging path it had just moved, hiding the first error."""
    credit(lake, BASE)
    changed = [(r[0], r[1], r[2], r[3] + 100, r[4]) for r in BASE]
    monkeypatch.setenv("CPF_FAIL_AT", "after_run_dir")
    with pytest.raises(pub.PublishError):
        credit(lake, changed)
    monkeypatch.delenv("CPF_FAIL_AT")
    published = {r["run_id"] for r in pub.read_current(lake)["published"]}
    (moved,) = [p for p in (lake / "runs").iterdir()
                if not p.name.startswith(".") and p.name not in published]
    manifest = json.loads((moved / "manifest.json").read_text())
    pub.publish_run(lake, pub.Staged(run_id=moved.name, path=moved, manifest=manifest))
    assert moved.name in {r["run_id"] for r in pub.read_current(lake)["published"]}
    sums = ledger(lake).group_by("nir").agg(pl.col("amount_cents").sum()).sort("nir")
    assert sums["amount_cents"].to_list() == [r[3] + 100 for r in sorted(BASE)]
    assert not pub.verify_ledger(lake)


def test_year_over_year_is_not_a_change_beside_an_hour_era_year():
    """analyst acceptance pass F2: 2018's credits are hours (credit_cents empty), so the whole
    of 2019 read as growth from 0 € (+120 653.79 €)."""
    from pipeline.catalog import queries
    con = duckdb.connect()
    con.execute("create table annual_credits as select * from (values "
                "(2018, 'standard', null::bigint), (2019, 'standard', 50000::bigint), "
                "(2020, 'standard', 40000::bigint)) t(year, category, credit_cents)")
    rows = {r[0]: r[6] for r in con.execute(queries()["year_over_year"]).fetchall()}
    assert rows == {2018: None, 2019: None, 2020: -10000}


def test_a_publish_retry_after_the_commit_point_rebuilds_the_catalog(lake, monkeypatch):
    """round-6 operator pass N1: the catalog's rebuild failed after CURRENT switched; the
    flow's retry said "run … is already published", hiding the cause and the fix. The retry
    (campaign.publish_task) now rebuilds the catalog of the published run."""
    from flows.campaign import publish_task
    credit(lake, BASE)
    changed = [(r[0], r[1], r[2], r[3] + 100, r[4]) for r in BASE]
    prep = steps.prepare(lake, 2024, as_of=AS_OF)
    computed = steps.compute(prep, FakeEngine(amounts_frame(changed)))
    staged = steps.post(prep, computed)
    monkeypatch.setenv("CPF_FAIL_AT", "after_current")
    with pytest.raises(pub.PublishError):
        steps.publish(prep, staged)
    monkeypatch.delenv("CPF_FAIL_AT")
    out = publish_task.fn(prep.to_dict(), {"run_id": staged.run_id, "path": str(staged.path),
                                           "manifest": staged.manifest})
    assert Path(out) == pub.run_dir(lake, staged.run_id)
    con = duckdb.connect(str(lake / "cpf.duckdb"), read_only=True)
    assert con.execute("select run_id from catalog_info").fetchone()[0] == staged.run_id
    con.close()
