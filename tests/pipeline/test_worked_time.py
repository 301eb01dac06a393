"""Engine plumbing: bucket pruning gives the same per-person results as the whole year, the
½-threshold Decision's exact fraction, the one-person lineage helper."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from pipeline.credits import compute_year
from pipeline.parameters import params_for_year
from pipeline.lake_reads import bucket_parts, nir_buckets, scan_table
from pipeline.explanations import source_declarations

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    subprocess.check_call([sys.executable, "-m", "generator.lake", "--root", str(root),
                           "--people", "400", "--year", "2025", "--seed", "3",
                           "--buckets", "4"], cwd=ROOT, stdout=subprocess.DEVNULL)
    return root


def test_threshold_fraction_exact_or_rounded():
    """The ½ test is on the exact ratio (cpf_rules.md §3); the parameter can still ask for a
    rounding: half-up to 4 decimals is ratio >= 9 999 / 20 000."""
    import dataclasses
    p = params_for_year(2025)
    assert p.threshold_test_fraction == (1, 2)
    assert dataclasses.replace(p, threshold_ratio_decimals=4).threshold_test_fraction == (9999, 20000)
    assert params_for_year(2017).threshold_test_fraction is None  # hour era: no threshold


def test_bucket_runs_partition_the_whole_year(small_lake):
    whole = compute_year(small_lake, 2025).amounts.collect().sort("nir")
    parts = pl.concat([compute_year(small_lake, 2025, buckets=[b]).amounts.collect()
                       for b in range(4)]).sort("nir")
    assert whole.height > 0
    assert parts.equals(whole)


def test_bucket_filter_prunes_files(small_lake):
    files = bucket_parts(small_lake, "contracts", [1])
    assert files and all("bucket=001" in str(f) for f in files)
    rows = scan_table(small_lake, "contracts", [1]).select("bucket").collect()
    assert rows.height > 0 and set(rows["bucket"].to_list()) == {1}


def test_nir_buckets_are_where_the_lake_stores_each_person(small_lake):
    """Identity links find the bucket of a NIR by the lake's rule, without reading the lake:
    it must be the bucket every row of that NIR was written to."""
    stored = (scan_table(small_lake, "individuals").filter(pl.col("nir").is_not_null())
              .select("nir", "bucket").unique().collect())
    assert stored["nir"].is_unique().all() and stored["bucket"].n_unique() == 4
    computed = nir_buckets(small_lake, pl.concat([stored["nir"], stored["nir"].head(3)]))
    assert computed.sort("nir").equals(stored.sort("nir"))


def test_source_declarations_for_one_person(small_lake):
    row = compute_year(small_lake, 2025).amounts.collect().sort("nir").row(0, named=True)
    src = source_declarations(small_lake, row["nir"], 2025)
    n = int(row["source_decl_ids"].split(" ")[0])
    assert src["decl_id"].n_unique() >= n > 0


def test_ntt_link_crosses_buckets(tmp_path):
    """NTT-only rows (bucket 0) linked to a NIR of another bucket are credited in that NIR's
    bucket run only, never twice, and not reported as ntt_only (cases.yaml NTT link case)."""
    import yaml
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scenario import ingest_case
    cases = yaml.safe_load((Path(__file__).parent / "cases.yaml").read_text(encoding="utf-8"))
    case = next(c for c in cases if "nir_from_month" in c)
    ingest_case(case, tmp_path)
    whole = compute_year(tmp_path, 2025)
    w = whole.amounts.collect()
    assert w["months_counted"].to_list() == [12]
    assert "ntt_only" not in whole.uncreditable.collect()["reason"].to_list()
    runs = [compute_year(tmp_path, 2025, buckets=[b]) for b in range(16)]
    parts = pl.concat([r.amounts.collect() for r in runs])
    assert parts.equals(w)
    assert all(r.uncreditable.collect().height == 0 for r in runs)
    assert source_declarations(tmp_path, case["nir"], 2025)["decl_id"].n_unique() == 12


def _case(tmp_path, prefix: str):
    import yaml
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scenario import ingest_case
    cases = yaml.safe_load((Path(__file__).parent / "cases.yaml").read_text(encoding="utf-8"))
    case = next(c for c in cases if c["name"].startswith(prefix))
    ingest_case(case, tmp_path)
    return case


def test_old_nir_link_crosses_buckets(tmp_path):
    """Rows under the NIA (bucket 15) count for the NIR (bucket 1) in the NIR's bucket run
    only; the NIA's own bucket run credits nobody (cases.yaml NIA case)."""
    case = _case(tmp_path, "NIA replaced")
    whole = compute_year(tmp_path, 2025).amounts.collect()
    assert whole["nir"].to_list() == [case["nir"]] and whole["months_counted"].to_list() == [12]
    runs = {b: compute_year(tmp_path, 2025, buckets=[b]) for b in range(16)}
    assert runs[15].amounts.collect().height == 0
    assert pl.concat([r.amounts.collect() for r in runs.values()]).equals(whole)
    assert all(r.uncreditable.collect().height == 0 for r in runs.values())
    assert source_declarations(tmp_path, case["nir"], 2025)["decl_id"].n_unique() == 12


def test_employments_follow_identity_links_and_bucket_runs(tmp_path):
    """The engine's employments (who employed whom, for analysts) count the months declared
    under the old NIR for the current one — one row, 12 months, from 2020 — and the bucket
    runs together give the whole year's rows."""
    case = _case(tmp_path, "NIA replaced")
    whole = compute_year(tmp_path, 2025).employments.collect()
    assert whole.select("nir", "year", "siren", "siret", "first_contract_start",
                        "months_declared").rows() == [
        (case["nir"], 2025, "123456782", "12345678200017", date(2020, 1, 1), 12)]
    parts = pl.concat([compute_year(tmp_path, 2025, buckets=[b]).employments.collect()
                       for b in range(16)])
    assert parts.sort("nir", "siret").equals(whole)


def test_conflicting_old_nir_is_withheld_and_reported_once(tmp_path):
    """An old NIR claimed by two NIRs: the three people are reported (identity_conflict),
    none credited, each reported once over the bucket runs."""
    _case(tmp_path, "an old NIR claimed")
    whole = compute_year(tmp_path, 2025)
    assert whole.amounts.collect().height == 0
    unc = whole.uncreditable.collect()
    assert sorted(unc["nir"].to_list()) == ["1850175123457", "1850175123459", "1850175123460"]
    assert set(unc["reason"]) == {"identity_conflict"}
    assert "claimed by 1850175123457,1850175123460" in \
        unc.filter(pl.col("nir") == "1850175123459")["detail"][0]
    per_run = pl.concat([compute_year(tmp_path, 2025, buckets=[b]).uncreditable.collect()
                         for b in range(16)])
    assert per_run.sort("nir").equals(unc.sort("nir"))


def test_resolve_chains_follows_links_and_never_guesses():
    from pipeline.identity import resolve_chains
    edges = pl.DataFrame({"old": ["A", "B", "C", "X", "X", "Y", "P", "Q"],
                          "new": ["B", "C", "D", "N1", "N2", "X", "Q", "P"]})
    resolved, conflicts = resolve_chains(edges)
    assert resolved.rows() == [("A", "D"), ("B", "D"), ("C", "D")]  # A -> B -> C -> D
    got = dict(conflicts.rows())
    assert set(got) == {"X", "N1", "N2", "Y", "P", "Q"}  # ambiguous, claimants, chain, cycle
    assert got["X"] == "old identifier claimed by N1,N2"
    assert got["P"] == got["Q"] == "cycle of identity links"


def test_decl_id_order_is_string_order():
    """The integer sort keys of decl_ids (current_declarations' ranks) order them exactly like
    the strings, line numbers compared as text; another format falls back to the string."""
    import random

    from pipeline.declaration_ranks import decl_id_order
    rng = random.Random(7)
    lines = [1, 2, 9, 10, 18, 100, 99999, 9999999999]
    ids = {f"{rng.getrandbits(rng.choice([4, 64])):016x}-{rng.choice(lines + [rng.randint(1, 10**6)])}"
           for _ in range(20000)}
    df = pl.DataFrame({"decl_id": sorted(ids, key=lambda _: rng.random())})
    keys = decl_id_order(df["decl_id"])
    assert [k.meta.output_name() for k in keys] == ["_id_prefix", "_id_line"]
    assert df.sort(keys)["decl_id"].to_list() == sorted(ids)
    odd = pl.Series("decl_id", ["B-1", "a-2"])
    assert [k.meta.output_name() for k in decl_id_order(odd)] == ["decl_id"]


def _contracts(*keys: tuple) -> pl.DataFrame:
    return pl.DataFrame(keys, schema=["nir", "siret", "contract_no"], orient="row")


def test_contract_ids_need_both_hashes():
    """A row whose join hash matches a dictionary key but whose check hash does not is not
    that contract (it gets no cid); rows of the key itself keep theirs."""
    from pipeline.contract_keys import contract_dictionary, with_cid
    rows = _contracts(("1800101000001", "11111111100011", "A1"),
                      ("1800101000001", None, "A2"), ("2900101000002", "22222222200022", None))
    keys = contract_dictionary(rows)
    assert keys["cid"].to_list() == [0, 1, 2] and keys["pid"].to_list() == [0, 0, 1]
    assert with_cid(rows, keys).collect()["cid"].sort().to_list() == [0, 1, 2]
    tampered = keys.with_columns(pl.when(pl.col("cid") == 1).then(pl.col("_h2") + 1)
                                 .otherwise(pl.col("_h2")).alias("_h2"))
    assert with_cid(rows, tampered).collect()["cid"].sort().to_list() == [0, 2]


def test_distinct_keys_sharing_a_join_hash_stop_the_run(monkeypatch):
    """Two distinct contract keys with the same 64-bit join hash are never merged."""
    import pipeline.contract_keys as ck
    real = ck.contract_key_hashes
    monkeypatch.setattr(ck, "contract_key_hashes",
                        lambda: [pl.lit(7, pl.UInt64).alias("_h"), real()[1]])
    with pytest.raises(ck.KeyHashCollision):
        ck.contract_dictionary(_contracts(("1800101000001", "11111111100011", "A1"),
                                          ("1800101000001", "11111111100011", "A2")))


def test_activity_unit_is_its_contracts_in_the_same_declaration():
    """An Activité without 53.003 takes the unit of its contract in the SAME declaration:
    read by cid when the contract's unit never changed, through the (declaration, person
    block) lookup when it did (hours in one declaration, forfait days in the next)."""
    from pipeline.contract_keys import KEY_SHIFT
    from pipeline.contract_attributes import with_contract_unit
    contracts = pl.DataFrame({  # cid 0 always "10"; cid 1 "10" in decl 5, "20" in decl 6
        "cid": [0, 0, 1, 1], "_drank": [5, 6, 5, 6], "person_occ": [1, 1, 1, 1],
        "_ord": [50, 60, 51, 61], "unit": ["10", "10", "10", "20"]})
    activities = pl.DataFrame({"cid": [0, 1, 1, 1], "_drank": [6, 5, 6, 7],
                               "person_occ": [1, 1, 1, 1]}).with_columns(
        (pl.col("cid") * KEY_SHIFT + pl.col("_drank")).alias("dk"))
    out = with_contract_unit(activities, contracts, n_contracts=2).sort("cid", "_drank")
    # decl 7 declares no contract 1: no unit (never worked time), as the join always gave
    assert out["contract_unit"].to_list() == ["10", "10", "20", None]


def test_current_declarations_are_kept_per_lake_state_and_held_per_bucket(small_lake, tmp_path,
                                                                         monkeypatch):
    """The lake state's current declarations are computed once and kept on disk (a new state
    replaces them); a bucket run may hold only those its rows refer to (forced here: the small
    lake's buckets all meet every declaration), ranked in the same order, same results."""
    import shutil

    import pipeline.declaration_ranks as dr
    lake = tmp_path / "copy"
    shutil.copytree(small_lake, lake)
    first = dr.current_declarations_path(lake)
    assert dr.current_declarations_path(lake) == first
    every = dr.scan_current(first).collect().sort("_drank")
    assert every["_drank"].to_list() == list(range(every.height))
    whole = compute_year(lake, 2025).amounts.collect().sort("nir")
    monkeypatch.setattr(dr, "SUBSET_AT_MOST", 1.01)  # always hold the bucket's own subset
    one = dr.run_declarations(lake, [0])
    assert one.decls["_drank"].to_list() == list(range(one.decls.height))
    order = {d: i for i, d in enumerate(every["decl_id"])}
    ranks = [order[d] for d in one.decls["decl_id"]]
    assert 0 < len(ranks) <= every.height and ranks == sorted(ranks)
    # exactly the current declarations that the contracts of the buckets read refer to
    referred = scan_table(lake, "contracts", dr.run_buckets(one.ident, [0])).select("decl_id").unique().collect()
    assert sorted(one.decls["decl_id"]) == sorted(every.join(referred, on="decl_id",
                                                             how="semi")["decl_id"])
    parts = pl.concat([compute_year(lake, 2025, buckets=[b]).amounts.collect()
                       for b in range(4)]).sort("nir")
    assert parts.equals(whole)
    part = next((lake / "lake" / "declarations").rglob("*.parquet"))
    pl.read_parquet(part).head(0).write_parquet(part)  # a new lake state: that month is empty
    second = dr.current_declarations_path(lake)
    assert second != first and not first.exists()
    assert dr.scan_current(second).collect().height < every.height


def test_quarantined_hours_do_not_send_a_month_to_the_remuneration_route():
    """An hour line whose 53.002 was quarantined (null measure) still makes its month an hour
    month (0 usable hours); only a month whose Activité is all in sans-notion units takes the
    remuneration route (``split_sans_notion_months``)."""
    from datetime import date
    from pipeline.worked_time import paid_time, split_sans_notion_months
    p = params_for_year(2025)
    rows = {"cm": [1, 2, 3], "unit": ["10", "32", "10"], "measure_h": [None, 800, 6067]}
    act = pl.DataFrame({
        "activity_type": ["01"] * 3, "pay_type": ["002"] * 3,
        "period_end": [date(2025, 6, 30), date(2025, 7, 31), date(2025, 8, 31)],
        "unit": rows["unit"], "contract_unit": ["10"] * 3, "measure_h": rows["measure_h"],
        "cid": [7, 8, 9], "_drank": [0, 1, 2]}, schema_overrides={"measure_h": pl.Int64})
    time, sans_notion = split_sans_notion_months(paid_time(act.lazy(), p).collect())
    assert sorted(time["cm"] // (1 << 32)) == [7, 9]  # cid 7: null hours, still an hour month
    assert (sans_notion["cm"] // (1 << 32)).to_list() == [8]
    assert "_has_time" not in time.columns


UNDECLARED = {
    "name": "months under contract that no DSN declares", "year": 2025,
    "contracts": [
        {"start": "2020-01-01", "quota": "50.00", "undeclared": [10, 11, 12]},  # open, never filed
        {"start": "2025-01-01", "siret": "12345678200025", "quota": "40.00", "undeclared": [7]},
        # declared every month at that establishment: its July DSN exists but omits CTR002
        {"start": "2024-01-01", "siret": "12345678200025", "number": "CTR0B", "quota": "10.00"},
        # ended by its declared end (62.001): nothing to declare after June
        {"start": "2025-01-01", "end": "2025-06-30", "siret": "98765432100014", "quota": "20.00"},
        # a CDD that ran to its planned end (40.010), no 62 block: nothing after June either
        {"start": "2025-01-01", "nature": "02", "planned_end": "2025-06-30", "number": "CDD01",
         "quota": "20.00", "undeclared": [7, 8, 9, 10, 11, 12]},
        # dirty data: a planned end before the start (40.010 < 40.001) is no month at all
        {"start": "2025-06-10", "nature": "02", "planned_end": "2025-03-31", "number": "CDD02",
         "siret": "98765432100014", "quota": "10.00", "undeclared": [6, 7, 8, 9, 10, 11, 12],
         "worked": {"1-5": 10}},
    ],
}


def test_employments_list_months_under_contract_that_no_dsn_declares(tmp_path):
    """An open contract whose DSN stop (Oct–Dec), a one-month gap (July): those months are
    reported per (person, establishment); a contract ended by 62.001 or run to its planned
    end (40.010) has nothing undeclared. Bucket runs give the same rows."""
    import copy
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scenario import ingest_case
    ingest_case(copy.deepcopy(UNDECLARED), tmp_path)
    whole = compute_year(tmp_path, 2025).employments.collect()
    rows = {r["siret"]: r for r in whole.iter_rows(named=True)}
    first = rows["12345678200017"]  # CTR001 (3 undeclared) and CDD01 (to its planned end)
    assert (first["months_declared"], first["months_undeclared"], first["undeclared_months"]) \
        == (9, 3, "2025-10 2025-11 2025-12")
    assert (rows["12345678200025"]["months_declared"], rows["12345678200025"]["months_undeclared"],
            rows["12345678200025"]["undeclared_months"]) == (12, 1, "2025-07")
    assert (rows["98765432100014"]["months_declared"],
            rows["98765432100014"]["months_undeclared"],
            rows["98765432100014"]["undeclared_months"]) == (6, 0, None)  # CTR003 and CDD02
    parts = pl.concat([compute_year(tmp_path, 2025, buckets=[b]).employments.collect()
                       for b in range(16)])
    assert parts.sort("nir", "siret").equals(whole)
    # through the product: `cpf credit` warns, `cpf explain` says it for the person
    from typer.testing import CliRunner
    from flows.cli import app
    cli = CliRunner()
    r = cli.invoke(app, ["credit", "--year", "2025", "--lake", str(tmp_path),
                         "--as-of", "2026-05-02"], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert "undeclared months: 4 person-month(s) of 2025 in which 1 person was under contract at 2 " \
           "establishment(s)" in r.output
    r = cli.invoke(app, ["explain", first["nir"], "--year", "2025", "--lake", str(tmp_path)],
                   env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert "Under contract at 12345678200017 in 2025-10 2025-11 2025-12 but no current DSN " \
           "declares it" in r.output
    assert "Under contract at 12345678200025 in 2025-07" in r.output
    assert "Declarations used" in r.output  # the lineage, with each declaration's file:
    assert "12345678200017_202509_1.dsn" in r.output and "12345678200017_202510" not in r.output
    # the analysts' query tells a missing DSN (Oct-Dec at ...017) from one omitting the contract
    import duckdb
    from pipeline.catalog import queries
    con = duckdb.connect(str(tmp_path / "cpf.duckdb"), read_only=True)
    got = con.execute(queries()["undeclared_months"]).fetchall()
    con.close()
    assert [(r[2], r[3], r[4], r[5]) for r in got] == [
        ("12345678200017", "2025-10", 1, False), ("12345678200017", "2025-11", 1, False),
        ("12345678200017", "2025-12", 1, False), ("12345678200025", "2025-07", 1, True)]


def test_the_run_says_how_many_months_no_dsn_declares(tmp_path):
    """The operators' note (CLI, flow log, artifact) counts people, establishments and
    months from the run's employments; silent when every month under contract is declared."""
    from flows.run_notes import undeclared_note
    from pipeline.employments import EMPLOYMENTS_SCHEMA
    run = tmp_path / "DIR" / "runs" / "r1"
    run.mkdir(parents=True)
    rows = [("1850175123456", 2025, "123456782", "12345678200017", date(2020, 1, 1), 9, 3,
             "2025-10 2025-11 2025-12"),
            ("1850175123456", 2025, "123456782", "12345678200025", date(2025, 1, 1), 11, 1,
             "2025-07"),
            ("2850175123457", 2025, "123456782", "12345678200017", date(2021, 1, 1), 12, 0, None)]
    pl.DataFrame(rows, schema=EMPLOYMENTS_SCHEMA, orient="row").write_parquet(
        run / "employments.parquet")
    note = undeclared_note(run)
    assert note.startswith("undeclared months: 4 person-month(s) of 2025 in which 1 person was under "
                           "contract at 2 establishment(s)")
    assert f"--lake {tmp_path / 'DIR'}" in note
    pl.DataFrame(rows[2:], schema=EMPLOYMENTS_SCHEMA, orient="row").write_parquet(
        run / "employments.parquet")
    assert undeclared_note(run) is None


def test_a_contract_only_a_later_dsn_declares_has_its_months_of_n_listed(tmp_path):
    """A hire of 15 November 2025 that the employer first declares in its January 2026 DSN:
    November and December 2025 are months under contract that no DSN of 2025 declares, and the
    person has an employments row for 2025 (months_declared 0)."""
    import copy
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scenario import ingest_case
    case = {"name": "late hire", "year": 2025,
            "contracts": [{"start": "2025-11-15", "undeclared": [11, 12],
                           "worked": {"2026-01": 151.67}}]}
    ingest_case(copy.deepcopy(case), tmp_path)
    emp = compute_year(tmp_path, 2025).employments.collect()
    assert emp.select("months_declared", "months_undeclared", "undeclared_months",
                      "first_contract_start").rows() == [(0, 2, "2025-11 2025-12",
                                                          date(2025, 11, 15))]


def test_sans_notion_absence_months_share_one_denominator():
    """A sans-notion absence over months of 31, 28 and 30 days adds ONE denominator to the
    person's exact sum, not one per month length (round-5 money pass H1: a maternity Jan-May
    took 4 of the K_MAX references and the person was set aside as too_many_references), and
    each month's value is unchanged: min(R x days/dim, R - pay) / R for R = 2080/12 x SMIC."""
    from fractions import Fraction

    from pipeline.absences import sans_notion_absence_terms

    p = params_for_year(2025)
    absent = pl.LazyFrame({"pid": [1, 1, 1], "month": [date(2025, 1, 1), date(2025, 2, 1),
                                                       date(2025, 4, 1)],
                           "abs_days": [16, 28, 30]})
    paid = pl.LazyFrame({"pid": [1], "month": [date(2025, 1, 1)], "amount_cents": [30000]},
                        schema={"pid": pl.Int64, "month": pl.Date, "amount_cents": pl.Int64})
    t = sans_notion_absence_terms(absent, paid, p).collect().sort("abs_days")
    assert t["den"].n_unique() == 1
    ref = Fraction(p.smic_reference_cents_x12, 144)  # 2080/12 x SMIC, in cents
    months = [Fraction(n, d) for n, d in zip(t["num"], t["den"])]
    assert months == [min(ref * 16 / 31, ref - 30000) / ref, 1, 1], months
