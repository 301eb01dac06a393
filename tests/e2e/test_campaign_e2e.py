"""The real `cpf` command on data/samples: run (Prefect) → rerun → explain → replay → tamper."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import app

pytestmark = pytest.mark.prefect
runner = CliRunner()


def test_campaign_end_to_end(prefect_harness, samples_dir, tmp_path):
    samples = samples_dir
    lake = tmp_path / "DIR"
    args = ["--year", "2025", "--lake", str(lake), "--holders", str(samples / "holders.csv"),
            "--balances", str(samples / "balances.csv"), "--as-of", "2026-04-15"]
    r = runner.invoke(app, ["run", "--dsn", str(samples)] + args)
    assert r.exit_code == 0, r.output
    cur = json.loads((lake / "CURRENT").read_text())
    first = cur["run_id"]
    con = duckdb.connect(str(lake / "cpf.duckdb"), read_only=True)
    n_credits = con.execute("select count(*) from annual_credits where year = 2025").fetchone()[0]
    n_entries = con.execute("select count(*) from ledger_entries").fetchone()[0]
    cats = {r[0] for r in con.execute("select distinct category from annual_credits").fetchall()}
    # the samples' annule-et-remplace: the version it replaces is listed as not used, by whom
    replaced = con.execute("select q.source_file, q.detail from quarantine q "
                           "where q.scope = 'version'").fetchall()
    con.close()
    assert [(Path(f).name, Path(d.split()[4]).name) for f, d in replaced] == [
        ("73282932000017_202503_11.dsn", "73282932000017_202503_11_v2.dsn")], replaced
    assert "declarations not used: 1 replaced by an annule-et-remplace" in " ".join(r.output.split())
    assert n_credits > 0 and n_entries > 0
    assert cats <= {"standard", "low_qualified", "boeth", "esat"}
    log = json.loads((lake / "runs" / first / "run_log.json").read_text())  # not audited
    assert set(log["timings_s"]) == {"prepare", "compute", "post", "publish"}
    # watching progress: the flow runs on the server and one run's log lines (the pinned
    # Prefect/FastAPI pair answers `prefect flow-run ls` with 422)
    from flows.prefect_status import recent_flow_runs
    runs = recent_flow_runs(50)
    assert any(r["flow"] == "cpf-campaign" and r["state"] == "Completed" for r in runs), runs
    campaign_id = next(r["id"] for r in runs if r["flow"] == "cpf-campaign")
    r = runner.invoke(app, ["flow-runs", campaign_id, "--limit", "500"])
    assert r.exit_code == 0 and "Beginning flow run" in " ".join(r.output.split()), r.output
    # the campaign's own lines (ingest and credit summaries) and its sub-flow runs' lines,
    # from the id an operator has (the one `prefect deployment run` prints)
    from prefect.logging.handlers import APILogHandler

    from flows.prefect_status import flow_run_logs
    APILogHandler().flush()  # log lines reach the server in the background
    lines = flow_run_logs(campaign_id, limit=500)
    by_flow = {}
    for line in lines:
        by_flow.setdefault(line["flow"], []).append(line["message"])
    assert set(by_flow) == {"cpf-campaign", "cpf-credit-year"}, set(by_flow)
    assert any(m.startswith("ingested 51 file(s)") for m in by_flow["cpf-campaign"])
    assert any("people credited" in m for m in by_flow["cpf-campaign"])
    assert any("Finished in state Completed" in m for m in by_flow["cpf-credit-year"])

    # rerun without Prefect on unchanged data: posts nothing
    r = runner.invoke(app, ["credit"] + args)
    assert r.exit_code == 0, r.output
    cur = json.loads((lake / "CURRENT").read_text())
    assert cur["run_id"] != first
    m = json.loads((lake / "runs" / cur["run_id"] / "manifest.json").read_text())
    assert m["counts"]["entries"] == 0
    # a rerun that forgets --holders carries the register over: no low-qualified reversal
    r = runner.invoke(app, ["credit", "--year", "2025", "--lake", str(lake), "--as-of", "2026-04-15"])
    assert r.exit_code == 0, r.output
    cur = json.loads((lake / "CURRENT").read_text())
    m2 = json.loads((lake / "runs" / cur["run_id"] / "manifest.json").read_text())
    assert m2["counts"]["entries"] == 0
    assert m2["inputs"]["holders_sha256"] == m["inputs"]["holders_sha256"] is not None

    # explain someone credited
    ac = pl.read_parquet(lake / "runs" / first / "annual_credits.parquet")
    nir = ac.filter(pl.col("credit_cents") > 0)["nir"][0]
    r = runner.invoke(app, ["explain", nir, "--year", "2025", "--lake", str(lake)])
    assert r.exit_code == 0, r.output
    assert "worked_ratio" in r.output and "annual_credit" in r.output
    # the contract-month terms are recomputed for the person's bucket and agree with the run
    assert "Contract-months" in r.output
    assert "equals the published one" in " ".join(r.output.split())

    # the inputs behind the figures (samples README): P25's work accident, P21's recall of
    # February declared in April, P28's quarantined November line
    for who, shown in (("1740426198035", ["Absences meeting the year", "2024-12-16",
                                          "2025-02-28", "2025-01..2025-03 (3 DSN)"]),
                       ("2650169123097", ["another month than its pay period", "+7.00",
                                          "73282932000017_202504_11.dsn:546"]),
                       ("2690926362401", ["input lines set aside", "S21.G00.50.001",
                                          "invalid_date"])):
        r = runner.invoke(app, ["explain", who, "--year", "2025", "--lake", str(lake)],
                          env={"COLUMNS": "250"})
        assert r.exit_code == 0 and all(x in r.output for x in shown), (who, r.output)

    # explain on a damaged copy says its recomputed tables may miss rows (run/credit refuse it)
    damaged = tmp_path / "damaged"
    shutil.copytree(lake, damaged)
    next((damaged / "lake" / "pay").rglob("*.parquet")).unlink()
    r = runner.invoke(app, ["explain", "1740426198035", "--year", "2025", "--lake", str(damaged)])
    assert r.exit_code == 0 and "warning: the lake is damaged" in " ".join(r.output.split())

    # a person examined but not creditable (declared with an NTT only) gets the reason
    unc = pl.read_parquet(lake / "runs" / first / "uncreditable.parquet")
    ntt = unc.filter(pl.col("reason") == "ntt_only")["ntt"][0]
    r = runner.invoke(app, ["explain", ntt, "--year", "2025", "--lake", str(lake)])
    assert r.exit_code == 0 and "ntt_only" in r.output, r.output

    # replay reproduces, byte for byte
    r = runner.invoke(app, ["replay", "--year", "2025", "--lake", str(lake)])
    assert r.exit_code == 0, r.output

    # a tampered entry is detected
    p = lake / "ledger" / "entries" / f"run={first}" / "part-0.parquet"
    shutil.copyfile(p, tmp_path / "orig.parquet")
    df = pl.read_parquet(p)
    df = df.with_columns(pl.when(pl.col("nir") == nir).then(pl.col("amount_cents") + 1)
                         .otherwise(pl.col("amount_cents")).alias("amount_cents"))
    df.write_parquet(p)
    r = runner.invoke(app, ["replay", "--year", "2025", "--lake", str(lake)])
    assert r.exit_code == 1
    assert "tampered" in r.output
    shutil.copyfile(tmp_path / "orig.parquet", p)


def test_campaign_window_refused_after_end_unless_forced(prefect_harness, tmp_path, monkeypatch):
    from flows import campaign as campaign_module
    from flows.campaign import WindowClosed, campaign, check_window
    check_window(2025, dt.date(2026, 6, 20))  # last day allowed
    with pytest.raises(WindowClosed):
        check_window(2025, dt.date(2026, 6, 21))
    check_window(2025, dt.date(2026, 6, 21), force=True)
    check_window(2025, dt.date(2026, 4, 15))  # the window opens
    with pytest.raises(WindowClosed, match="opens on 2026-04-15"):
        check_window(2025, dt.date(2026, 4, 14))
    check_window(2025, dt.date(2026, 3, 1), force=True)
    with pytest.raises(WindowClosed):
        campaign(year=2025, dsn=[], lake=str(tmp_path / "DIR"), as_of="2026-07-01",
                 enforce_window=True)
    # the window is checked on the real date: a run date inside it does not reopen it
    # (operator acceptance pass F3: a backdated run posted after the close, without force)
    monkeypatch.setattr(campaign_module, "today_paris", lambda: dt.date(2026, 12, 2))
    with pytest.raises(WindowClosed, match="closed on 2026-06-20"):
        campaign(year=2025, dsn=[], lake=str(tmp_path / "DIR"), as_of="2026-05-01",
                 enforce_window=True)


def test_the_scheduled_campaign_gets_its_runs(prefect_harness):
    """The deployment's schedule (operations.yaml) makes the server create runs at the next
    15 April 06:00 Paris. With SQLAlchemy 2.1 under prefect 3.8.8 the server's scheduler
    failed on every insert (no scheduled run, ever): pinned in pyproject.toml."""
    import asyncio
    from zoneinfo import ZoneInfo

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.schedules import CronSchedule

    from flows.campaign import campaign, next_campaigns, operations
    from flows.prefect_status import scheduled_flow_runs
    ops = operations()
    now = dt.datetime.now(ZoneInfo(ops["timezone"]))

    async def register_and_schedule() -> None:
        deployment = await campaign.to_deployment(
            name=ops["served_deployment_name"],
            schedules=[CronSchedule(cron=ops["cron"], timezone=ops["timezone"])],
            parameters={"lake": "DIR", "dsn": ["inbox"], "enforce_window": True})
        dep_id = await deployment.apply()
        async with get_client() as client:  # what the scheduler service does, on demand
            r = await client._client.post(f"/deployments/{dep_id}/schedule", json={
                "end_time": (now + dt.timedelta(days=800)).isoformat(), "max_runs": 2})
            r.raise_for_status()

    asyncio.run(register_and_schedule())
    runs = scheduled_flow_runs("cpf-campaign")
    starts = [dt.datetime.fromisoformat(r["expected_start"]) for r in runs]
    assert starts and starts == next_campaigns(now, n=len(starts))
    first = starts[0].astimezone(ZoneInfo("Europe/Paris"))
    assert (first.month, first.day, first.hour, first.minute) == (4, 15, 6, 0)
    assert {r["deployment"] for r in runs} == {ops["served_deployment_name"]}
    # what `cpf schedule` tells the operator: the deployment, its active schedule, and that
    # nothing polls it yet; `cpf flow-runs` keeps the future runs out of the recent ones
    from flows.cli import schedule_notes
    from flows.prefect_status import active_flow_runs, deployments, recent_flow_runs
    dep = next(d for d in deployments("cpf-campaign") if d["name"] == ops["served_deployment_name"])
    assert not dep["paused"] and dep["schedules"] == [
        {"cron": ops["cron"], "timezone": ops["timezone"], "active": True}]
    assert dep["status"] == "NOT_READY"
    assert any("no worker or serve process polls" in n for n in schedule_notes([dep]))
    assert active_flow_runs("cpf-campaign") == []  # the server accepts the filter
    assert not {r["id"] for r in runs} & {r["id"] for r in recent_flow_runs(200)}
    out = " ".join(runner.invoke(app, ["schedule"]).output.split())
    assert ops["served_deployment_name"] in out and "scheduled on the server: 2 run(s)" in out


def test_schedule_notes_say_why_the_campaign_would_not_start():
    from flows.cli import schedule_notes
    ready = {"name": "d", "paused": False, "status": "READY",
             "schedules": [{"cron": "0 6 15 4 *", "timezone": "Europe/Paris", "active": True}]}
    assert schedule_notes([ready]) == []
    assert "no deployment" in schedule_notes([])[0]
    assert schedule_notes([{**ready, "paused": True}]) == [
        "deployment d is paused: its scheduled runs will not be created"]
    assert schedule_notes([{**ready, "schedules": []}]) == ["deployment d has no active schedule"]
    # a run left Running by a killed process holds the deployment's concurrency slot
    stuck = {"id": "r1", "name": "gentle-fox", "state": "Running", "start": "2027-04-15T04:00",
             "deployment_id": "dep1"}
    (note,) = schedule_notes([{**ready, "id": "dep1"}], [stuck])
    assert note.startswith("campaign run gentle-fox (r1) is Running since 2027-04-15T04:00 on "
                           "deployment d") and "deployment:dep1 --active-slots 0" in note


def test_credit_year_flow_with_fake_engine(prefect_harness, tmp_path, monkeypatch):
    """The Prefect glue on a hand-built lake (independent of the real engine)."""
    from flows import steps
    from flows.campaign import credit_year
    from tests.ledger.conftest import BASE, FakeEngine, amounts_frame, make_lake
    monkeypatch.setattr(steps, "default_compute", FakeEngine(amounts_frame(BASE)))
    root = tmp_path / "DIR"
    root.mkdir()
    make_lake(root)
    out = credit_year(2024, str(root), as_of="2025-05-02")
    assert out["manifest"]["counts"]["entries"] == 5
    again = credit_year(2024, str(root), as_of="2025-05-02")
    assert again["manifest"]["counts"]["entries"] == 0
    assert json.loads((root / "CURRENT").read_text())["run_id"] == again["run_id"]


def test_campaign_reruns_the_years_late_dsn_may_change(prefect_harness, tmp_path, monkeypatch):
    """cpf_rules.md §2.3: a DSN for 2024 arriving after 2024's campaign is picked up by the
    next campaign (2025's), which reruns 2024 before crediting 2025."""
    from flows import steps
    from flows.campaign import campaign
    from tests.ledger.conftest import FakeEngine, amounts_frame, make_lake, nir

    class ByYear(FakeEngine):  # 2024 is worth more once the late file is in the lake
        def __call__(self, root, year, holders):
            late = (Path(root) / "lake" / "files").exists() and pl.scan_parquet(
                Path(root) / "lake" / "files" / "*.parquet").select(pl.len()).collect().item() > 2
            self.amounts = amounts_frame([(nir(3), 1.0, "standard", 60000 if late and year == 2024
                                           else 50000, 500000)]).with_columns(
                pl.lit(year, pl.Int32).alias("year"))
            return super().__call__(root, year, holders)

    monkeypatch.setattr(steps, "default_compute", ByYear(None))
    root = tmp_path / "DIR"
    root.mkdir()
    make_lake(root)
    first = campaign(year=2024, lake=str(root), as_of="2025-05-02")
    assert first["reruns"] == [] and first["credit"]["manifest"]["counts"]["entries"] == 1
    make_lake(root, n_files=3)  # the late DSN of March 2024
    dot = tmp_path / "dotations.csv"
    dot.write_text("funder_id,nir,amount_cents,received_date,certification_codes,deadline,"
                   f"refund\nOPCO1,{nir(3)},10000,2026-04-20,,,\n")
    out = campaign(year=2025, lake=str(root), dotations=str(dot), as_of="2026-05-02")
    assert [r["manifest"]["year"] for r in out["reruns"]] == [2024]
    assert out["reruns"][0]["manifest"]["counts"]["entries_by_kind"] == {"adjustment_credit": 1}
    assert out["reruns"][0]["manifest"]["inputs"]["dotations_sha256"] is None
    assert out["credit"]["manifest"]["year"] == 2025  # the dotations go with the year's run
    assert out["credit"]["manifest"]["inputs"]["dotations_sha256"] is not None
    again = campaign(year=2025, lake=str(root), as_of="2026-05-03")  # nothing new: no rerun
    assert again["reruns"] == []


def test_campaign_reruns_until_freed_room_is_paid(prefect_harness, tmp_path, monkeypatch):
    """Round-2 acceptance pass: a late correction raises 2024 (125 → 500 €) and lowers 2025
    (475 → 208.34 €) for an account at 4 400 €. Rerunning 2024 first withholds the increase
    (2025 filled the ceiling), then 2025's reversal frees 266.66 €: a second pass pays it."""
    from flows import steps
    from flows.campaign import campaign
    from pipeline.publish import published_entries
    from tests.ledger.conftest import FakeEngine, amounts_frame, make_lake, nir

    late = {"on": False}

    class Late(FakeEngine):
        def __call__(self, root, year, holders):
            cents = {(2024, False): 12500, (2024, True): 50000,
                     (2025, False): 47500, (2025, True): 20834}[(year, late["on"])]
            self.amounts = amounts_frame([(nir(3), 0.5, "standard", cents, 500000)]) \
                .with_columns(pl.lit(year, pl.Int32).alias("year"))
            return super().__call__(root, year, holders)

    monkeypatch.setattr(steps, "default_compute", Late(None))
    root = tmp_path / "DIR"
    root.mkdir()
    make_lake(root)
    bal = tmp_path / "balances.csv"
    bal.write_text(f"nir,earned_balance_cents\n{nir(3)},440000\n")
    campaign(year=2024, lake=str(root), balances=str(bal), as_of="2025-05-02")
    campaign(year=2025, lake=str(root), as_of="2026-05-02")
    balance = lambda: published_entries(root).filter(  # noqa: E731
        pl.col("nir") == nir(3))["amount_cents"].sum()
    assert balance() == 500000
    make_lake(root, n_files=3)
    late["on"] = True
    out = campaign(year=2025, lake=str(root), as_of="2026-05-03")
    assert balance() == 500000  # 4 400 + 391.66 (2024: the room left) + 208.34 (2025)
    kinds = [(o["manifest"]["year"], o["manifest"]["counts"]["entries"])
             for o in [*out["reruns"], out["credit"]]]
    assert kinds[:3] == [(2024, 0), (2025, 1), (2024, 1)], kinds
