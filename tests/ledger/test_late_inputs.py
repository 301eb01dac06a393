"""Which other years a run leaves to rerun (pipeline.late_inputs): cpf_rules.md §2.3, late DSN
are picked up by the next run; a rerun that moves money changes later years' ceilings."""

from __future__ import annotations

import datetime as dt

import polars as pl

from flows import run_notes, steps
from parsers.lake_schema import TABLES
from pipeline.late_inputs import years_to_reexamine

from .conftest import AS_OF, AS_OF_2025, FakeEngine, amounts_frame, make_lake, nir


def credit(root, year, rows, as_of):
    amounts = amounts_frame(rows).with_columns(pl.lit(year, pl.Int32).alias("year"))
    return steps.credit(root, year, compute_fn=FakeEngine(amounts), as_of=as_of)


def add(root, table, row, name):
    """One row of a lake table in a part of its own (a DSN file the test declares)."""
    (root / "lake" / table).mkdir(exist_ok=True)
    pl.DataFrame([row], schema=TABLES[table]).write_parquet(
        root / "lake" / table / f"part-{name}.parquet")


def declare(root, sha, month, **rows):
    """A DSN file ``sha`` declaring ``month`` for SIRET 1…1, with one row per table given."""
    name = f"{sha[0]}-{month:%Y%m}"
    add(root, "files", {"file_sha256": sha, "batch_id": name}, name)
    add(root, "declarations", {"file_sha256": sha, "decl_id": name, "decl_month": month,
                               "siret": "1" * 14}, name)
    for table, row in rows.items():
        add(root, table, {"file_sha256": sha, "decl_id": name, "decl_month": month,
                          "nir": nir(3), "siret": "1" * 14, **row}, name)


def test_late_dsn_and_moved_balances_name_the_years_to_rerun(lake):
    credit(lake, 2024, [(nir(3), 1.0, "standard", 50000, 500000)], AS_OF)
    assert years_to_reexamine(lake, 2025, 3) == {}  # the 2024 run saw every file
    make_lake(lake, n_files=3)  # a DSN for March 2024 arrives after 2024's campaign
    assert years_to_reexamine(lake, 2025, 3) == {
        2024: "1 DSN file(s) its latest run did not see may change it"}
    assert steps.published_years_changed(lake) == {"2024": 1}  # what cpf ingest then says
    assert years_to_reexamine(lake, 2028, 3) == {}  # beyond rerun_years_back: by hand only

    out = credit(lake, 2025, [(nir(3), 1.0, "standard", 50000, 500000)], AS_OF_2025)
    assert any("earlier years to rerun" in n and "2024: 1 DSN file" in n
               for n in run_notes.other_years_notes(out.run_dir))
    # the 2024 rerun finds more for 2024 (it sees the late file) and posts it: 2025's ceiling
    # was applied to the balance before it
    out = credit(lake, 2024, [(nir(3), 1.0, "standard", 60000, 500000)], AS_OF_2025)
    assert out.manifest["counts"]["entries"] == 1
    notes = run_notes.other_years_notes(out.run_dir)
    assert notes == ["years 2025 were credited against the balance before this run's 1 "
                     "entry: rerun them, oldest first (cpf credit --year Y), or the next "
                     "campaign does"]
    assert years_to_reexamine(lake, 2026, 3) == {
        2025: f"run(s) {out.run_id} of earlier years changed the balance before it"}
    # once 2025 is rerun, nothing is left to rerun; an unchanged rerun posts nothing
    again = credit(lake, 2025, [(nir(3), 1.0, "standard", 50000, 500000)], AS_OF_2025)
    assert run_notes.other_years_notes(again.run_dir) == []
    assert years_to_reexamine(lake, 2026, 3) == {}
    unchanged = credit(lake, 2024, [(nir(3), 1.0, "standard", 60000, 500000)], AS_OF_2025)
    assert unchanged.manifest["counts"]["entries"] == 0
    assert years_to_reexamine(lake, 2026, 3) == {}


def test_a_later_months_file_reruns_a_year_only_with_rows_dated_in_it(lake):
    """A 2025 DSN arriving after 2024's campaign concerns 2024 only through rows dated in
    2024 (a pay recall here); without them 2024 is left alone."""
    credit(lake, 2024, [(nir(3), 1.0, "standard", 50000, 500000)], AS_OF)
    declare(lake, "e" * 64, dt.date(2025, 2, 1))
    assert years_to_reexamine(lake, 2025, 3) == {}
    declare(lake, "f" * 64, dt.date(2025, 3, 1), pay={
        "period_start": dt.date(2024, 12, 1), "period_end": dt.date(2024, 12, 31),
        "amount_cents": 10000})
    assert years_to_reexamine(lake, 2025, 3) == {
        2024: "1 DSN file(s) its latest run did not see may change it"}


def test_an_absence_repeated_with_its_reprise_after_the_year_reruns_nothing(lake):
    """An arrêt spanning 31 December 2024, declared again in May 2025 with its reprise date,
    is the same in 2024 (nationally some always are: 2024 would be rerun every campaign); a
    later month moving its reprise back into 2024, or a new absence meeting 2024, reruns it."""
    sick = {"last_worked_day": dt.date(2024, 12, 10)}
    declare(lake, "a" * 64, dt.date(2024, 12, 1), work_stoppages=dict(
        planned_end=dt.date(2025, 1, 15), **sick))
    credit(lake, 2024, [(nir(3), 1.0, "standard", 50000, 500000)], AS_OF)
    declare(lake, "b" * 64, dt.date(2025, 5, 1), work_stoppages=dict(
        planned_end=dt.date(2025, 1, 15), resumption_date=dt.date(2025, 4, 28), **sick))
    declare(lake, "c" * 64, dt.date(2025, 6, 1), work_stoppages=dict(  # none of it in 2024
        last_worked_day=dt.date(2023, 3, 1), resumption_date=dt.date(2023, 4, 1)))
    assert years_to_reexamine(lake, 2025, 3) == {}
    declare(lake, "d" * 64, dt.date(2025, 7, 1), work_stoppages=dict(
        planned_end=dt.date(2025, 1, 15), resumption_date=dt.date(2024, 12, 20), **sick))
    assert years_to_reexamine(lake, 2025, 3) == {
        2024: "1 DSN file(s) its latest run did not see may change it"}
    declare(lake, "d" * 64, dt.date(2025, 7, 1), work_stoppages=dict(  # another one, in 2024
        last_worked_day=dt.date(2024, 6, 3), resumption_date=dt.date(2024, 6, 10)))
    assert years_to_reexamine(lake, 2025, 3) == {
        2024: "1 DSN file(s) its latest run did not see may change it"}


def test_a_later_version_of_a_declaration_holding_a_recall_reruns_the_year(lake):
    """An annule-et-remplace of February 2025 without the December 2024 recall its original
    declared removes the recall from 2024 with no row of its own dated in 2024; one of a
    declaration without such rows leaves 2024 alone."""
    recall = {"period_start": dt.date(2024, 12, 1), "period_end": dt.date(2024, 12, 31),
              "amount_cents": 10000}
    declare(lake, "a" * 64, dt.date(2025, 2, 1), pay=recall)
    declare(lake, "b" * 64, dt.date(2025, 3, 1))
    credit(lake, 2024, [(nir(3), 1.0, "standard", 50000, 500000)], AS_OF)
    declare(lake, "c" * 64, dt.date(2025, 3, 1))  # a new version of March: no recall
    assert years_to_reexamine(lake, 2025, 3) == {}
    declare(lake, "d" * 64, dt.date(2025, 2, 1))  # a new version of February
    assert years_to_reexamine(lake, 2025, 3) == {
        2024: "1 DSN file(s) its latest run did not see may change it"}


def test_later_inputs_removing_or_reviving_an_absence_or_moving_an_end_rerun_the_year(lake):
    """Round-2 shapes a row-by-row comparison missed: a later version of a declaration that
    held an absence covering 2024 (it may drop it), an absence declared again after an
    annulation the run saw (it counts again), a contract end after 2024 for a contract the
    run saw end in 2024 (the absence is no longer cut at the old end)."""
    arret = dict(last_worked_day=dt.date(2024, 10, 31), planned_end=dt.date(2025, 3, 31),
                 motif="02")
    declare(lake, "a" * 64, dt.date(2025, 1, 1), work_stoppages=arret)
    declare(lake, "b" * 64, dt.date(2024, 12, 1), work_stoppages={**arret, "motif": "99"})
    declare(lake, "c" * 64, dt.date(2025, 2, 1),
            contract_ends={"contract_no": "C1", "end_date": dt.date(2024, 12, 10)})
    credit(lake, 2024, [(nir(3), 1.0, "standard", 50000, 500000)], AS_OF)
    rerun = {2024: "1 DSN file(s) its latest run did not see may change it"}
    assert years_to_reexamine(lake, 2025, 3) == {}
    for sha, month, rows in (
            ("d" * 64, dt.date(2025, 1, 1), {}),  # a new version of January, without it
            ("e" * 64, dt.date(2025, 3, 1), {"work_stoppages": arret}),  # after the 99
            ("f" * 64, dt.date(2025, 4, 1), {"contract_ends": {
                "contract_no": "C1", "end_date": dt.date(2025, 3, 15)}})):
        declare(lake, sha, month, **rows)
        assert years_to_reexamine(lake, 2025, 3) == rerun, sha[0]
        for table in ("files", "declarations", *rows):  # one shape at a time
            (lake / "lake" / table / f"part-{sha[0]}-{month:%Y%m}.parquet").unlink()
    assert years_to_reexamine(lake, 2025, 3) == {}
