"""Published years that DSN ingested since their latest run may change, and later years a
rerun leaves stale.

Why: cpf_rules.md §2.3 (Decision — cut-off) says that DSN arriving after year N's campaign
(a late month, an annule-et-remplace, a pay recall in a later month) are "picked up by the next
run as an adjustment entry". A run credits one year, so the campaign must know which earlier
years to re-examine first; and a rerun that moves money changes the balance that later years'
ceilings were applied to, so it must say which later years to rerun.

Year N's computation reads every declaration from December N-1 on (pay recalls and absences
declared later count for N: ``pipeline.worked_time``). A DSN file the latest run of N did not
see may change N when it declares a month of N (or December N-1), or when a later month's
declaration in it holds rows dated in N (``dated_in_year``). Whether it does change N is only
known by recomputing, which a rerun does: an unchanged rerun posts nothing.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from pipeline.absences import absence_period, cancel_motif
from pipeline.parameters import params_for_year
from pipeline.publish import (DSN_INPUTS, entries_path, latest_run_for_year, read_current,
                              read_manifest, run_dir, scan_lake)
from pipeline.versions import KEY, keyed_declarations


def published_years(root: Path | str, current: dict | None = None) -> list[int]:
    """The years the ledger holds a published run for, in order."""
    current = current or read_current(Path(root))
    return sorted(int(y) for y in current.get("latest_by_year", {}))


CONTRACT_OF_END = ["nir", "siret", "contract_no"]  # the contract a 62 block ends

ABSENCE_KEYS = {  # one absence, repeated in every monthly DSN it spans
    "work_stoppages": ["nir", "siret", "contract_no", "motif", "last_worked_day"],
    "suspensions": ["nir", "siret", "contract_no", "motif", "start_date"],
}


def absence_window_end(table: str, year: int) -> pl.Expr:
    """The last day of year N an absence row covers, null when it covers none: what the
    engine keeps of it (``pipeline.absences``: from the day after the last worked day, or
    the start, to the day before the reprise, else the planned or declared end, else the end
    of the year). A later month repeating an arrêt with its reprise date after 31 December N
    changes nothing in N; one moving the reprise back into N does."""
    lo, hi = date(year, 1, 1), date(year, 12, 31)
    start, end = absence_period(table)
    end = pl.min_horizontal(end.fill_null(hi), pl.lit(hi))
    return pl.when(end >= pl.max_horizontal(start, pl.lit(lo))).then(end)


def dated_in_year(year: int) -> dict[str, pl.Expr]:
    """Per lake table, the rows of a LATER month's declaration that can change year N's
    computation: a pay block whose period meets N (a recall; its Activité lines hang under
    it), an absence or suspension starting by the end of N (``unseen_files`` keeps those
    whose part of N differs from what the run saw), a contract end (or its annulation) dated
    up to the end of N, and identity rows: a declaration carrying both a NIR and an NTT (it
    links NTT-only rows), a NIR change, a contract's identity change dated up to the end of
    N. Unknown dates count as meeting N (when in doubt, rerun)."""
    lo, hi = date(year, 1, 1), date(year, 12, 31)
    return {
        "pay": ((pl.col("period_start") <= hi) & (pl.col("period_end") >= lo)).fill_null(True),
        "work_stoppages": (pl.col("last_worked_day") < hi).fill_null(True),
        "suspensions": (pl.col("start_date") <= hi).fill_null(True),
        "contract_ends": (pl.col("end_date") <= hi).fill_null(True),
        "individuals": pl.col("nir").is_not_null() & pl.col("ntt").is_not_null(),
        "individual_changes": pl.col("old_nir").is_not_null(),
        "contract_changes": ((pl.col("old_siret").is_not_null()
                              | pl.col("old_contract_no").is_not_null()
                              | pl.col("old_contract_start").is_not_null())
                             & (pl.col("change_date") <= hi).fill_null(True)),
    }


def unseen_files(root: Path | str, year: int, current: dict | None = None,
                 own_months_only: bool = False) -> int:
    """Lake DSN files that year N's latest published run did not use and that may change N
    (0 when N has no published run): a declaration of a month N's computation reads as a
    whole (December N-1 to December N: a late month, an annule-et-remplace), or a later
    month's declaration holding rows dated in N (``dated_in_year``) or superseding one the
    run used that held a pay recall or a contract end dated in N (``_new_versions``) — not
    with ``own_months_only``, the cheap form."""
    root = Path(root)
    run_id = latest_run_for_year(root, year, current)
    if run_id is None:
        return 0
    seen = pl.scan_parquet(run_dir(root, run_id) / DSN_INPUTS).select("file_sha256")
    last = date(year, 12, 1)
    own = (scan_lake(root, "declarations")  # a rejected one is never used: no change
           .filter(pl.col("decl_month").is_between(date(year - 1, 12, 1), last)
                   & ~pl.col("rejected").fill_null(False))
           .select("file_sha256"))
    later = [] if own_months_only else [
        *(_unseen_rows(root, table, rows, last, seen)
          for table, rows in dated_in_year(year).items()),
        _new_versions(root, year, last, seen)]
    return (pl.concat([own, *later]).unique().join(seen, on="file_sha256", how="anti")
            .select(pl.len()).collect().item())


def _new_versions(root: Path, year: int, last: date, seen: pl.LazyFrame) -> pl.LazyFrame:
    """file_sha256 of the later months' declarations of the same key (SIRET, month,
    fraction: ``pipeline.versions``) as one the run used that held rows bearing on N (a pay
    recall, an absence or annulation covering part of N, a contract end up to N, an identity
    change: ``dated_in_year``): an annule-et-remplace without them removes them from N with
    no row of its own saying so."""
    rows = dated_in_year(year)
    for table in ABSENCE_KEYS:  # only those covering part of N (not every old open arrêt)
        rows[table] = absence_window_end(table, year).is_not_null()
    held = pl.concat([scan_lake(root, table).join(seen, on="file_sha256", how="semi")
                      .filter((pl.col("decl_month") > last) & expr).select("decl_id")
                      for table, expr in rows.items()])
    decls = keyed_declarations(scan_lake(root, "declarations")
                               .filter(pl.col("decl_month") > last))
    return decls.join(decls.join(held, on="decl_id", how="semi").select(KEY), on=KEY,
                      how="semi").select("file_sha256")


def _unseen_rows(root: Path, table: str, rows: pl.Expr, last: date,
                 seen: pl.LazyFrame) -> pl.LazyFrame:
    """file_sha256 of the later months' ``rows`` of a table (absences: ``_changed_absences``;
    contract ends: also ``_moved_ends``)."""
    lf = scan_lake(root, table)
    found = lf.filter((pl.col("decl_month") > last) & rows)
    if table in ABSENCE_KEYS:
        return _changed_absences(lf, found, table, last.year, seen)
    if table == "contract_ends":
        return pl.concat([found, _moved_ends(lf, last, seen)]).select("file_sha256")
    return found.select("file_sha256")


def _changed_absences(lf: pl.LazyFrame, found: pl.LazyFrame, table: str, year: int,
                      seen: pl.LazyFrame) -> pl.LazyFrame:
    """file_sha256 of ``found`` absence rows whose part of year N differs from the latest
    declaration of that absence in the files the run saw (``absence_window_end``: an arrêt
    repeated with its reprise date is the same in N), or that an annulation the run saw had
    cancelled (declared again, it counts again)."""
    keys = ABSENCE_KEYS[table]
    win = absence_window_end(table, year)
    mine = lf.join(seen, on="file_sha256", how="semi")
    known = (mine.filter(pl.col("decl_month") == pl.col("decl_month").max().over(keys))
             .group_by(keys).agg(win.n_unique().alias("_n"), win.first().alias("_seen")))
    same = [k for k in keys if k != "motif"]  # an annulation names the absence by its start
    cancelled = (mine.filter(pl.col("motif") == cancel_motif(table, params_for_year(year)))
                 .select(same).unique().with_columns(pl.lit(True).alias("_cancelled")))
    changed = (pl.when(pl.col("_n").is_null()).then(pl.col("_win").is_not_null())
               .otherwise((pl.col("_n") > 1) | pl.col("_win").ne_missing(pl.col("_seen")))
               | (pl.col("_cancelled").fill_null(False) & pl.col("_win").is_not_null()))
    return (found.with_columns(win.alias("_win"))
            .join(known, on=keys, how="left", nulls_equal=True)
            .join(cancelled, on=same, how="left", nulls_equal=True)
            .filter(changed).select("file_sha256"))


def _moved_ends(lf: pl.LazyFrame, last: date, seen: pl.LazyFrame) -> pl.LazyFrame:
    """Later months' contract end rows of a contract the run saw end in N: a later end
    moves it (an absence is no longer cut at the old end)."""
    ended = (lf.join(seen, on="file_sha256", how="semi")
             .filter(pl.col("end_date") <= date(last.year, 12, 31))
             .select(CONTRACT_OF_END).unique())
    return (lf.filter(pl.col("decl_month") > last)
            .join(ended, on=CONTRACT_OF_END, how="semi", nulls_equal=True))


def later_years(root: Path | str, year: int) -> list[int]:
    """Published years after N: their ceilings used the balance before this run's entries."""
    return [y for y in published_years(root) if y > year]


def moved_since(root: Path | str, year: int, current: dict | None = None) -> list[str]:
    """Runs of earlier years published after year N's latest run that posted entries: N's
    ceiling was applied to a balance they have since changed."""
    root = Path(root)
    current = current or read_current(root)
    _, after = _runs_after(root, year, current)
    return [r["run_id"] for r in after if r["year"] < year
            and read_manifest(root, r["run_id"])["counts"]["entries"] > 0]


def room_freed_since(root: Path | str, year: int, current: dict | None = None) -> list[str]:
    """Runs published after year N's latest run that took money back (a negative earned
    entry) from someone whose late increase of N that run withheld for lack of room under
    the ceiling: rerunning N may now pay it."""
    root = Path(root)
    current = current or read_current(root)
    mine, after = _runs_after(root, year, current)
    f = run_dir(root, mine or "") / "annual_credits.parquet"
    if not after or not f.exists() or \
            "late_increase_withheld_cents" not in pl.read_parquet_schema(f):
        return []
    waiting = (pl.scan_parquet(f).filter(pl.col("late_increase_withheld_cents") > 0)
               .select("nir"))
    return [r["run_id"] for r in after
            if pl.scan_parquet(entries_path(root, r["run_id"]))
            .filter((pl.col("sub_ledger") == "earned") & (pl.col("amount_cents") < 0))
            .join(waiting, on="nir", how="semi").select(pl.len()).collect().item()]


def _runs_after(root: Path, year: int, current: dict) -> tuple[str | None, list[dict]]:
    """Year N's latest run and the runs published after it (CURRENT order)."""
    mine = latest_run_for_year(root, year, current)
    seq = next((r["seq"] for r in current.get("published", []) if r["run_id"] == mine), None)
    return mine, ([] if seq is None else
                  [r for r in current.get("published", []) if r["seq"] > seq])


def years_to_reexamine(root: Path | str, year: int, years_back: int,
                       holders_sha256: str | None = None) -> dict[int, str]:
    """Published years among the ``years_back`` before N to rerun before crediting N, oldest
    first, with why: from the oldest one that DSN files it did not see may change
    (``unseen_files``), whose ceiling a later run moved (``moved_since``), or whose latest run
    used another holders register than ``holders_sha256`` (the one the campaign uses; a
    declaration dated in a past year changes that year), every published year up to N-1 — a
    rerun that moves money changes the balance the later years' ceilings used."""
    root = Path(root)
    current = read_current(root)
    years = [y for y in published_years(root, current) if year - years_back <= y < year]
    why = {}
    for y in years:
        n, moved = unseen_files(root, y, current), moved_since(root, y, current)
        freed = room_freed_since(root, y, current)
        used = read_manifest(root, latest_run_for_year(root, y, current))["inputs"]
        register = holders_sha256 is not None and used.get("holders_sha256") != holders_sha256
        reasons = ([f"{n} DSN file(s) its latest run did not see may change it"] if n else []) \
            + ([f"run(s) {', '.join(moved)} of earlier years changed the balance before it"]
               if moved else []) \
            + ([f"run(s) {', '.join(freed)} freed room under the ceiling that a late increase "
                "of it lacked"] if freed else []) \
            + (["the holders register changed since its latest run"] if register else [])
        if reasons:
            why[y] = "; ".join(reasons)
    first = min(why, default=None)
    return {} if first is None else {
        y: why.get(y, "an earlier year is rerun first") for y in years if y >= first}


def stale_notes(root: Path | str, year: int, entries: int, years_back: int,
                holders_sha256: str | None = None) -> list[str]:
    """What a published run of year N must say about other years (``flows.run_notes``): the
    later years whose ceiling its entries moved, the earlier years DSN ingested since (or
    the register) may change — to be rerun, oldest first, as the campaign does — and older
    years than the campaign reruns that a late month or A&R concerns (by hand only)."""
    notes = []
    later = later_years(root, year)
    if entries and later:
        notes.append(f"years {', '.join(map(str, later))} were credited against the balance "
                     f"before this run's {entries} entr{'y' if entries == 1 else 'ies'}: rerun "
                     "them, oldest first (cpf credit --year Y), or the next campaign does")
    earlier = {y: why for y, why in
               years_to_reexamine(root, year, years_back, holders_sha256).items()
               if not why.startswith("an earlier")}
    if earlier:
        notes.append("earlier years to rerun, oldest first (the campaign reruns them before "
                     "its year): " + "; ".join(f"{y}: {why}" for y, why in earlier.items()))
    current = read_current(Path(root))
    older = {y: n for y in published_years(root, current) if y < year - years_back
             if (n := unseen_files(root, y, current, own_months_only=True))}
    if older:
        notes.append(f"DSN for months of years older than the campaign reruns "
                     f"(rerun_years_back {years_back}) arrived since their latest run: "
                     + ", ".join(f"{y} ({n} file(s))" for y, n in older.items())
                     + ": rerun them by hand, oldest first (cpf credit --year Y)")
    return notes
