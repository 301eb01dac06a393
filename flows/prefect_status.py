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


async def _post(path: str, body: dict) -> list[dict]:
    """POST a filter body to the API with Prefect's own HTTP client (URL, auth, retries):
    keys left out, never null (the server refuses null, see above)."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        response = await client._client.post(path, json=body)
        response.raise_for_status()
        return response.json()


def recent_flow_runs(limit: int = 20) -> list[dict]:
    """The latest flow runs (newest first): id, flow, name, state, start, end, parameters."""
    async def read() -> list[dict]:
        runs = await _post("/flow_runs/filter", {"sort": "EXPECTED_START_TIME_DESC",
                                                 "limit": limit})
        ids = sorted({r["flow_id"] for r in runs})
        flows = await _post("/flows/filter", {"flows": {"id": {"any_": ids}},
                                              "limit": max(1, len(ids))}) if ids else []
        names = {f["id"]: f["name"] for f in flows}
        return [{"id": r["id"], "flow": names.get(r["flow_id"], r["flow_id"]),
                 "name": r["name"], "state": (r.get("state") or {}).get("name", ""),
                 "start": r.get("start_time"), "end": r.get("end_time"),
                 "parameters": r.get("parameters") or {}} for r in runs]

    return asyncio.run(read())


def flow_run_logs(flow_run_id: str, limit: int = 200) -> list[dict]:
    """A flow run's log lines (its tasks' included), oldest first: time, level, message."""
    from uuid import UUID

    run = str(UUID(flow_run_id))  # ValueError when it is not an id
    logs = asyncio.run(_post("/logs/filter", {"logs": {"flow_run_id": {"any_": [run]}},
                                              "sort": "TIMESTAMP_ASC", "limit": limit}))
    return [{"time": lg["timestamp"], "level": logging.getLevelName(lg["level"]),
             "message": lg["message"]} for lg in logs]
