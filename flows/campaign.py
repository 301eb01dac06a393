"""Prefect flows: ``ingest``, ``credit_year``, ``campaign`` (both) and ``replay``.

The flows only orchestrate: every task wraps a plain function of ``flows.steps`` and passes
PATHS or small dicts, never DataFrames. Retries only on I/O tasks (ingestion, archiving,
publication); computing and posting are deterministic and not retried. A run report is attached
as Prefect artifacts (markdown table + link to the HTML report).

Without a Prefect server configured, calling a flow runs it in Prefect's local ephemeral mode.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from pathlib import Path

import yaml
from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.states import Failed

from flows import run_notes, steps
from parsers.ingest import UnreadableInputs
from parsers.lake import LakeDamaged, data_dir
from pipeline import publish as pub
from pipeline.late_inputs import years_to_reexamine

OPERATIONS = Path(__file__).with_name("operations.yaml")


class WindowClosed(RuntimeError):
    """Outside the campaign window of the year (use force=True / --force to run anyway)."""


def operations() -> dict:
    return yaml.safe_load(OPERATIONS.read_text())["campaign"]


def window_for(year: int, ops: dict | None = None) -> tuple[dt.date, dt.date]:
    """The campaign window of activity year N: [start, end] in year N+1."""
    ops = ops or operations()
    s, e = ops["window"]["start"], ops["window"]["end"]
    return (dt.date.fromisoformat(f"{year + 1}-{s}"), dt.date.fromisoformat(f"{year + 1}-{e}"))


def check_window(year: int, today: dt.date, force: bool = False, ops: dict | None = None) -> None:
    """Runs and reruns inside the window only, unless ``force``: after its end the year is
    closed; before its start the year's DSN are not all in (December's are filed in January,
    corrections follow)."""
    start, end = window_for(year, ops)
    if force:
        return
    if today > end:
        raise WindowClosed(f"the campaign window of year {year} closed on {end.isoformat()}; "
                           "run with --force (deployment: force=true) to post anyway")
    if today < start:
        raise WindowClosed(f"the campaign window of year {year} opens on {start.isoformat()}; "
                           "run with --force (deployment: force=true) to post before it")


def next_campaigns(after: dt.datetime, n: int = 1, ops: dict | None = None) -> list[dt.datetime]:
    """The next ``n`` scheduled campaign starts after ``after``, computed by Prefect's own cron
    schedule from operations.yaml (what the server will create: it creates a run only ~100
    days ahead, so on most days the server lists none yet)."""
    import asyncio

    from prefect.server.schemas.schedules import CronSchedule
    ops = ops or operations()
    sched = CronSchedule(cron=ops["cron"], timezone=ops["timezone"])
    return list(asyncio.run(sched.get_dates(n=n, start=after)))


def today_paris() -> dt.date:
    return steps.run_day()


# --- tasks -----------------------------------------------------------------------------------

def _transient(task, task_run, state) -> bool:
    """Retry a failed task only when a second try may pass (another run holding the lock):
    never bad input, never a damaged lake."""
    try:
        state.result()
    except (steps.InputError, LakeDamaged, UnreadableInputs):
        return False
    except Exception:
        return True
    return True


@task(name="ingest-dsn", retries=2, retry_delay_seconds=5, retry_condition_fn=_transient)
def ingest_task(paths: list[str], lake: str, lake_buckets: int | None = None,
                note_years: bool = True) -> dict:
    return steps.ingest_files([Path(p) for p in paths], Path(lake), n_buckets=lake_buckets,
                              note_years=note_years)


@task(name="prepare-run", retries=2, retry_delay_seconds=5, retry_condition_fn=_transient)
def prepare_task(lake: str, year: int, holders: str | None, balances: str | None,
                 dotations: str | None, as_of: str) -> dict:
    for note in steps.input_notes(Path(lake), holders, balances):  # a deployment's
        get_run_logger().warning(note)  # parameters may name neither file
    return steps.prepare(Path(lake), year, _p(holders), _p(balances), _p(dotations),
                         dt.date.fromisoformat(as_of)).to_dict()


@task(name="compute-year")
def compute_task(prepared: dict) -> dict:
    return steps.compute(steps.Prepared.from_dict(prepared))


@task(name="post-and-stage")
def post_task(prepared: dict, computed: dict) -> dict:
    st = steps.post(steps.Prepared.from_dict(prepared), computed)
    return {"run_id": st.run_id, "path": str(st.path), "manifest": st.manifest}


@task(name="publish", retries=2, retry_delay_seconds=5)
def publish_task(prepared: dict, staged: dict) -> str:
    st = pub.Staged(run_id=staged["run_id"], path=Path(staged["path"]), manifest=staged["manifest"])
    prep = steps.Prepared.from_dict(prepared)
    root = Path(prep.root)
    if any(r["run_id"] == st.run_id for r in pub.read_current(root)["published"]):
        # a retry after the commit point (the catalog's rebuild failed): the run IS published;
        # rebuild the catalog, or fail on ITS error — "already published" hid the cause and
        # the fix (round-6 operator pass N1)
        from pipeline.catalog import build_catalog
        try:
            build_catalog(root)
        except Exception as exc:
            raise pub.PublishError(
                f"run {st.run_id} is published (CURRENT names it); rebuilding the analysts' "
                f"catalog failed: {exc} — once fixed, cpf catalog --lake {root}") from exc
        shutil.rmtree(prep.work_dir, ignore_errors=True)
        return str(pub.run_dir(root, st.run_id))
    if pub.run_dir(root, st.run_id).exists() and not st.path.exists():
        # a retry after the run directory moved: finish the publication from there
        st = pub.Staged(run_id=st.run_id, path=pub.run_dir(root, st.run_id),
                        manifest=st.manifest)
    return steps.publish(prep, st)


@task(name="compute-shard")
def compute_shard_task(prepared: dict, shard: int, shards: int, lake_buckets: list[int]) -> dict:
    return steps.compute_shard(steps.Prepared.from_dict(prepared), shard, shards, lake_buckets)


@task(name="prepare-posting")
def prepare_posting_task(prepared: dict) -> str:
    return steps.prepare_posting(steps.Prepared.from_dict(prepared))


@task(name="post-shard")
def post_shard_task(prepared: dict, computed: dict, shards: int, lots: str) -> dict:
    return steps.post_shard(steps.Prepared.from_dict(prepared), computed["shard"], shards, lots)


@task(name="stage-sharded")
def stage_sharded_task(prepared: dict, posted: list[dict], lots: str, shards: int) -> dict:
    st = steps.finalize_sharded(steps.Prepared.from_dict(prepared), posted, lots, shards)
    return {"run_id": st.run_id, "path": str(st.path), "manifest": st.manifest}


@task(name="replay-year")
def replay_task(lake: str, year: int) -> dict:
    r = steps.replay(Path(lake), year)
    return {"ok": r.ok, "run_id": r.run_id, "differences": r.differences, "notes": r.notes}


def _p(s: str | None) -> Path | None:
    return Path(s) if s else None


def _artifacts(manifest: dict, run_dir: str, other_years: bool = True) -> None:
    c, t = manifest["counts"], manifest["totals_cents"]
    rows = [("people examined", c["examined"]), ("people credited", c["credited"]),
            ("not creditable", c["uncreditable"]),
            ("credited for the year (EUR)", f"{t['credit'] / 100:.2f}"),
            *([("credited for the year (hours, 2015-2018)", manifest["totals_hours"]["credit"])]
              if manifest.get("totals_hours") else []),
            ("entries posted", c["entries"])]
    rows += [(f"entries: {k}", f"{n} ({t['entries_by_kind'][k] / 100:.2f} EUR)")
             for k, n in c["entries_by_kind"].items()]
    notes = run_notes.run_notes(run_dir, other_years=other_years)
    for level, note in notes:
        get_run_logger().log(level, note)
    md = (f"# CPF year {manifest['year']} — run `{manifest['run_id']}`\n\n| | |\n|---|---:|\n"
          + "".join(f"| {a} | {b} |\n" for a, b in rows)
          + "".join(f"\n{n}\n" for _, n in notes) + f"\nSnapshot: `{run_dir}`\n")
    key = f"cpf-run-{manifest['year']}"
    create_markdown_artifact(markdown=md, key=key, description="CPF campaign run summary")
    create_link_artifact(link=(Path(run_dir) / "report" / "index.html").resolve().as_uri(),
                         link_text="HTML run report", key=f"{key}-report")


# --- flows ------------------------------------------------------------------------------------

@flow(name="cpf-ingest")
def ingest(dsn: list[str], lake: str, lake_buckets: int | None = None) -> dict:
    """DSN files/folders → lake (checksum dedup, archive copy for replay). ``lake_buckets``:
    person buckets of a new lake (fixed by its first ingestion)."""
    return ingest_task(dsn, lake, lake_buckets)


@flow(name="cpf-credit-year")
def credit_year(year: int, lake: str, holders: str | None = None, balances: str | None = None,
                dotations: str | None = None, as_of: str | None = None,
                other_years: bool = True) -> dict:
    """compute → post (diff + balance assertions) → publish (atomic) for year N.
    ``other_years=False``: a campaign's rerun, whose later years the campaign credits next —
    its log does not tell the operator to rerun them by hand (operator acceptance pass F5)."""
    day = as_of or steps.run_day().isoformat()
    t0, lap = time.perf_counter(), steps.Laps()
    with pub.run_lock(Path(lake)):
        prepared = prepare_task(lake, year, holders, balances, dotations, day)
        lap("prepare")
        computed = compute_task(prepared)
        lap("compute")
        staged = post_task(prepared, computed)
        lap("post")
        run_dir = publish_task(prepared, staged)
        lap("publish")
    pub.write_json_atomic({"flow_s": time.perf_counter() - t0, "timings_s": lap.seconds},
                          Path(run_dir) / "run_log.json")  # as the plain path writes it
    _artifacts(staged["manifest"], run_dir, other_years)
    return {"run_id": staged["run_id"], "run_dir": run_dir, "manifest": staged["manifest"]}


@flow(name="cpf-credit-year-sharded")
def credit_year_sharded(year: int, lake: str, shards: int, holders: str | None = None,
                        balances: str | None = None, dotations: str | None = None,
                        as_of: str | None = None, other_years: bool = True) -> dict:
    """Bounded-memory crediting: compute and post per bucket shard (mapped tasks, run by the
    flow's task runner: threads, processes or Dask), then stage + publish once."""
    day = as_of or steps.run_day().isoformat()
    t0 = time.perf_counter()
    with pub.run_lock(Path(lake)):
        prepared = prepare_task(lake, year, holders, balances, dotations, day)
        ids = steps._lake_bucket_ids(Path(lake))
        computed = compute_shard_task.map(unmapped(prepared), list(range(shards)),
                                          unmapped(shards), unmapped(ids))
        lots = prepare_posting_task(prepared)
        posted = post_shard_task.map(unmapped(prepared), computed, unmapped(shards),
                                     unmapped(lots))
        posted = [f.result() for f in posted]
        computed = [f.result() for f in computed]
        staged = stage_sharded_task(prepared, posted, lots, shards)
        run_dir = publish_task(prepared, staged)
    flow_s = time.perf_counter() - t0
    tasks_s = {"compute": sum(c["seconds"] for c in computed),
               "post": sum(p["seconds"] for p in posted)}
    pub.write_json_atomic({"flow_s": flow_s, "task_body_s": tasks_s,
                           "shards": steps.shard_log(computed, posted)},
                          Path(run_dir) / "run_log.json")
    _artifacts(staged["manifest"], run_dir, other_years)
    return {"run_id": staged["run_id"], "run_dir": run_dir, "manifest": staged["manifest"]}


def credit_with_plan(year: int, lake: str, holders: str | None = None,
                     balances: str | None = None, dotations: str | None = None,
                     as_of: str | None = None, runner: str | None = None,
                     buckets: int | None = None, dask_address: str | None = None,
                     max_workers: int | None = None, max_memory_gb: float | None = None,
                     other_years: bool = True) -> dict:
    """Resolve the execution plan for DIR (flows.runners.plan) and credit year N with it."""
    from flows.runners import plan, task_runner, worker_environment
    p = plan(Path(lake), runner=runner, buckets=buckets, max_workers=max_workers,
             max_memory_gb=max_memory_gb, dask_address=dask_address)
    if p.note():
        try:
            get_run_logger().warning(p.note())
        except Exception:  # called outside a flow run (benchmarks, tests)
            logging.getLogger(__name__).warning(p.note())
    if p.shards == 1 and p.runner == "thread":
        return credit_year(year, lake, holders, balances, dotations, as_of, other_years)
    f = credit_year_sharded.with_options(task_runner=task_runner(p))
    with worker_environment(p):
        out = f(year, lake, p.shards, holders, balances, dotations, as_of, other_years)
    out["plan"] = p.to_dict()
    return out


RERUN_PASSES = 3  # passes over the years to rerun (one suffices unless a rerun frees room)


@flow(name="cpf-campaign")
def campaign(year: int | None = None, dsn: list[str] | None = None, lake: str = "out",
             holders: str | None = None, balances: str | None = None,
             dotations: str | None = None, as_of: str | None = None,
             enforce_window: bool = False, force: bool = False, runner: str | None = None,
             buckets: int | None = None, dask_address: str | None = None,
             max_workers: int | None = None, max_memory_gb: float | None = None,
             lake_buckets: int | None = None, rerun_years_back: int | None = None) -> dict:
    """The yearly campaign: ingest the DSN received so far, rerun the published earlier years
    those DSN may change (``late_inputs.years_to_reexamine``, the ``rerun_years_back`` before
    N, operations.yaml: cpf_rules.md §2.3, late DSN are picked up by the next run), then credit
    year N (default: the previous calendar year). With ``enforce_window`` (the scheduled
    deployment), a run outside N's window (before its opening or after its end) is refused
    unless ``force``. ``runner``/``buckets``/…: see flows.runners."""
    log = get_run_logger()
    day = dt.date.fromisoformat(as_of) if as_of else today_paris()
    year = year or day.year - 1
    try:
        if enforce_window:  # on the real date: --as-of is the run date for dotation expiry,
            # never a way around the window (a backdated run posted after its close)
            check_window(year, today_paris(), force)
        if (msg := steps.year_not_over(year, day)) is not None:  # before ingesting anything
            raise steps.InputError([msg])
        lake, dsn = check_locations(lake, dsn, lake_buckets)
        pub.read_current(Path(lake))  # a damaged CURRENT: refused here, in one line
        holders, balances, dotations = (x or None for x in (holders, balances, dotations))
        steps.check_inputs(_p(holders), _p(balances), _p(dotations))  # before ingesting
    except (WindowClosed, steps.InputError, pub.PublishError) as exc:  # a refusal: no traceback
        log.error(str(exc))
        return Failed(message=str(exc), data=exc)
    try:
        # the campaign reruns the years the new DSN may change (its notes name older ones)
        report = ingest_task(dsn, lake, lake_buckets, note_years=False) if dsn else {}
    except (LakeDamaged, UnreadableInputs) as exc:  # a refusal (a damaged lake, a link to
        log.error(f"{exc}: " + "; ".join(exc.errors))  # nothing in the inbox), not a crash
        return Failed(message=str(exc), data=exc)
    if report:
        log.info(ingest_line(report))
        if not report.get("files_seen"):  # an empty inbox is worth a look before crediting
            log.warning(f"no DSN file found in {', '.join(dsn)}: crediting from the lake as is")
    back = operations()["rerun_years_back"] if rerun_years_back is None else rerun_years_back
    plan = dict(runner=runner, buckets=buckets, dask_address=dask_address,
                max_workers=max_workers, max_memory_gb=max_memory_gb)
    outs = credit_campaign_years(year, lake, back, holders, balances, dotations, day, plan)
    main = max(i for i, o in enumerate(outs) if o["manifest"]["year"] == year)
    return {"ingest": report, "reruns": [o for i, o in enumerate(outs) if i != main],
            "credit": outs[main]}


def credit_campaign_years(year: int, lake: str, back: int, holders: str | None,
                          balances: str | None, dotations: str | None, day: dt.date,
                          plan: dict) -> list[dict]:
    """Rerun the past years to rerun (``late_inputs.years_to_reexamine``), oldest first, then
    credit year N; then again, up to ``RERUN_PASSES`` passes, while some year is left to rerun
    (a pass's reversals may free room a year rerun before them had withheld). The outcomes of
    every run, in order, each with its ``rerun_reason`` (None for year N's first run)."""
    log = get_run_logger()
    register = campaign_register(lake, holders)
    todo = [*years_to_reexamine(Path(lake), year, back, register).items(), (year, None)]
    outs: list[dict] = []
    for _ in range(RERUN_PASSES):
        for i, (y, why) in enumerate(todo):
            last = i == len(todo) - 1  # an earlier run: the campaign credits its later years next
            log.info(f"year {y} rerun ({why})" if why else f"year {y}")
            first_of_year = not any(o["manifest"]["year"] == year for o in outs)
            # --balances once, on the first run (it only opens accounts the ledger does not
            # hold yet); --dotations with year N's first run; holders apply by their dates
            out = credit_with_plan(y, lake, holders, balances if not outs else None,
                                   dotations if y == year and first_of_year else None,
                                   day.isoformat(), **plan, other_years=last)
            out["rerun_reason"] = why
            log.info(credit_line(out["manifest"], out["run_dir"]))  # on this run too, not
            for level, note in run_notes.run_notes(out["run_dir"], other_years=last):
                log.log(level, note)  # only on the sub-flow run an operator must look up
            outs.append(out)
        todo = list(years_to_reexamine(Path(lake), year + 1, back + 1, register).items())
        if not todo:
            break
    return outs


def campaign_register(lake: str, holders: str | None) -> str | None:
    """sha256 of the holders register the campaign's runs use: the file given, else the one
    the latest published run had (carried over), else None."""
    if holders:
        return pub.sha256_file(Path(holders))
    carried = pub.latest_input(Path(lake), "holders_sha256")
    return carried[1].name if carried else None


def check_locations(lake: str, dsn: list[str] | None,
                    lake_buckets: int | None = None) -> tuple[str, list[str]]:
    """A deployment's paths come from environment variables at registration (CPF_LAKE,
    CPF_DSN_DIR): unset, they arrive as "" and a run would ingest the working directory and
    publish a lake in it. Refused, with the reason — and so are a lake path that is a file and
    a bucket count the lake cannot take (they were retried as transient failures and ended on
    a traceback: operator acceptance pass F6)."""
    if not (lake or "").strip():
        raise steps.InputError(["lake: empty path (a deployment registered without CPF_LAKE?)"])
    if any(not (d or "").strip() for d in dsn or []):
        raise steps.InputError(["dsn: empty path (a deployment registered without "
                                "CPF_DSN_DIR?)"])
    missing = [d for d in dsn or [] if not Path(d).exists()]
    if missing:
        raise steps.InputError([f"dsn: {d} does not exist" for d in missing])
    if Path(lake).exists() and not Path(lake).is_dir():  # as the CLI: refused, not retried
        raise steps.InputError([f"lake: {lake} is not a directory"])
    if lake_buckets is not None:  # a bucket count the lake cannot take: bad input, no retry
        from parsers.lake_settings import LakeSettingsError, fix_bucket_count
        try:
            fix_bucket_count(data_dir(lake), lake_buckets, record=False)
        except LakeSettingsError as exc:
            raise steps.InputError([str(exc)]) from exc
    return str(data_dir(lake)), list(dsn or [])


def ingest_line(report: dict) -> str:
    """The ingestion's counts in one log line (what `cpf ingest` prints as a table)."""
    return (f"ingested {report.get('files_ingested', 0)} file(s) "
            f"({report.get('files_skipped_duplicate', 0)} already in the lake), "
            f"{report.get('declarations', 0)} declaration(s), {report.get('lines_read', 0)} "
            f"line(s) read, {report.get('lines_quarantined', 0)} quarantined"
            + "".join(f"; published year {y} may change ({n} DSN file(s) its latest run did not "
                      "see): rerun it" for y, n in report.get("published_years_changed", {}).items()))


def credit_line(manifest: dict, run_dir: str) -> str:
    """The run's outcome in one log line."""
    from pipeline.run_report import amount_text
    c, t = manifest["counts"], manifest["totals_cents"]
    hours = manifest.get("totals_hours", {})
    return (f"year {manifest['year']}, run {manifest['run_id']}: {c['credited']} people "
            f"credited {amount_text(t['credit'], hours.get('credit'))}, {c['uncreditable']} "
            f"not creditable, {c['entries']} entries posted; snapshot {run_dir}")


@flow(name="cpf-replay")
def replay(year: int, lake: str) -> dict:
    """Recompute year N from the archived inputs; fails unless identical to the ledger."""
    r = replay_task(lake, year)
    if not r["ok"]:
        raise RuntimeError(f"replay of {year} differs: " + "; ".join(r["differences"][:5]))
    return r
