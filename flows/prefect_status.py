"""Watching the campaign's flow runs on a Prefect server, for operators.

Why not ``prefect flow-run ls`` / ``prefect flow-run logs``: with the pinned pair this machine can
install (prefect 3.8.8, fastapi < 0.155: pyproject.toml) the server answers those commands
with 422 Unprocessable Entity: the Prefect client sends unset filters as ``null`` and this
FastAPI refuses null for them (an empty filter object instead would join the deployments and
hide every run started without one). These readers leave unset keys out of the request body,
which the server accepts. Plain functions over Prefect's HTTP client, read-only.
"""

from __future__ import annotations

import asyncio
import logging

PAGE = 200  # the server's largest ``limit``


async def _post(path: str, body: dict) -> list[dict]:
    """POST a filter body to the API with Prefect's own HTTP client (URL, auth, retries):
    keys left out, never null (the server refuses null, see above)."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        response = await client._client.post(path, json=body)
        response.raise_for_status()
        return response.json()


async def _post_paged(path: str, body: dict, limit: int) -> list[dict]:
    """Up to ``limit`` rows of a filter, ``PAGE`` at a time (the server's largest limit)."""
    rows: list[dict] = []
    while len(rows) < limit:
        want = min(PAGE, limit - len(rows))
        page = await _post(path, {**body, "limit": want, "offset": len(rows)})
        rows += page
        if len(page) < want:
            break
    return rows


async def _flow_names(flow_ids) -> dict[str, str]:
    """Flow id -> flow name, for the given ids."""
    ids = sorted(set(flow_ids))
    flows = await _post("/flows/filter", {"flows": {"id": {"any_": ids}},
                                          "limit": len(ids)}) if ids else []
    return {f["id"]: f["name"] for f in flows}


def recent_flow_runs(limit: int = 20) -> list[dict]:
    """The latest flow runs (newest first): id, flow, name, state, start, end, parameters.
    Runs still in state Scheduled are left out: the server creates them ~100 days ahead, and
    sorted by expected start they would come above every run that happened
    (``scheduled_flow_runs`` lists them)."""
    async def read() -> list[dict]:
        runs = await _post_paged("/flow_runs/filter", {
            "flow_runs": {"state": {"type": {"not_any_": ["SCHEDULED"]}}},
            "sort": "EXPECTED_START_TIME_DESC"}, limit)
        names = await _flow_names(r["flow_id"] for r in runs)
        return [{"id": r["id"], "flow": names.get(r["flow_id"], r["flow_id"]),
                 "name": r["name"], "state": (r.get("state") or {}).get("name", ""),
                 "start": r.get("start_time"), "end": r.get("end_time"),
                 "parameters": r.get("parameters") or {}} for r in runs]

    return asyncio.run(read())


def scheduled_flow_runs(flow_name: str, limit: int = 20) -> list[dict]:
    """The flow's runs in state Scheduled, soonest first: id, name, deployment, expected_start."""
    async def read() -> list[dict]:
        runs = await _post("/flow_runs/filter", {
            "flows": {"name": {"any_": [flow_name]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
            "sort": "EXPECTED_START_TIME_ASC", "limit": limit})
        ids = sorted({r["deployment_id"] for r in runs if r.get("deployment_id")})
        deps = await _post("/deployments/filter", {"deployments": {"id": {"any_": ids}},
                                                   "limit": len(ids)}) if ids else []
        names = {d["id"]: d["name"] for d in deps}
        return [{"id": r["id"], "name": r["name"],
                 "deployment": names.get(r.get("deployment_id"), ""),
                 "expected_start": r.get("expected_start_time")} for r in runs]

    return asyncio.run(read())


def active_flow_runs(flow_name: str, limit: int = 20) -> list[dict]:
    """The flow's runs Pending, Running or Cancelling (oldest first): id, name, state, start,
    deployment_id. A run whose process was killed stays so on the server, and holds its
    deployment's concurrency slot: no later campaign starts until it is released."""
    async def read() -> list[dict]:
        runs = await _post("/flow_runs/filter", {
            "flows": {"name": {"any_": [flow_name]}},
            "flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING", "CANCELLING"]}}},
            "sort": "START_TIME_ASC", "limit": limit})
        return [{"id": r["id"], "name": r["name"],
                 "state": (r.get("state") or {}).get("name", ""),
                 "start": r.get("start_time"), "deployment_id": r.get("deployment_id")}
                for r in runs]

    return asyncio.run(read())


def deployments(flow_name: str) -> list[dict]:
    """The flow's deployments on the server, by name: name, paused, status (READY when a
    worker or ``serve`` polls it), work_pool, and its schedules (cron, timezone, active) — so
    that an operator sees before 15 April whether the campaign will start at all."""
    async def read() -> list[dict]:
        deps = await _post_paged("/deployments/filter", {
            "flows": {"name": {"any_": [flow_name]}}, "sort": "NAME_ASC"}, PAGE)
        return [{"name": d["name"], "id": d["id"], "paused": bool(d.get("paused")),
                 "status": d.get("status") or "", "work_pool": d.get("work_pool_name") or "",
                 "schedules": [{"cron": (s.get("schedule") or {}).get("cron", ""),
                                "timezone": (s.get("schedule") or {}).get("timezone", ""),
                                "active": bool(s.get("active"))}
                               for s in d.get("schedules") or []]} for d in deps]

    return asyncio.run(read())


def flow_run_logs(flow_run_id: str, limit: int = 200) -> list[dict]:
    """A flow run's log lines, its tasks' and its sub-flow runs' included (the campaign runs
    ingestion and crediting as sub-flows: the id ``prefect deployment run`` prints is the
    parent's), oldest first: time, level, flow (the run's flow name), task (the task run's
    name, empty for the flow's own lines), message."""
    from uuid import UUID

    root = str(UUID(flow_run_id))  # ValueError when it is not an id

    async def read() -> list[dict]:
        names: dict[str, str] = {}  # flow run id -> its flow's name
        level = await _post("/flow_runs/filter", {"flow_runs": {"id": {"any_": [root]}},
                                                  "limit": 1})
        while level:  # the run, then its sub-flow runs, level by level
            flow_name = await _flow_names(r["flow_id"] for r in level)
            names.update({r["id"]: flow_name.get(r["flow_id"], r["name"]) for r in level})
            children = await _post_paged("/flow_runs/filter", {"flow_runs": {
                "parent_flow_run_id": {"any_": [r["id"] for r in level]}}}, limit)
            level = [c for c in children if c["id"] not in names]
        logs = await _post_paged("/logs/filter", {
            "logs": {"flow_run_id": {"any_": sorted(names)}}, "sort": "TIMESTAMP_ASC"}, limit)
        task_runs = await _post_paged("/task_runs/filter", {  # which step each line is at
            "flow_runs": {"id": {"any_": sorted(names)}}}, limit)
        tasks = {t["id"]: t["name"] for t in task_runs}
        return [{"time": lg["timestamp"], "level": logging.getLevelName(lg["level"]),
                 "flow": names.get(lg["flow_run_id"], ""),
                 "task": tasks.get(lg.get("task_run_id"), ""), "message": lg["message"]}
                for lg in logs]

    return asyncio.run(read())
