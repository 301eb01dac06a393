"""Serve the campaign deployment without a work pool: ``python -m flows.serve``.

Schedule, timezone and concurrency come from flows/operations.yaml (operations settings, not
law). The scheduled run credits the previous calendar year with ``enforce_window=True``: reruns
inside the window (15 April - 20 June), refused outside unless an operator passes ``force=True``.
Paths come from the environment: CPF_LAKE and CPF_DSN_DIR (required: a default would publish a
lake wherever the process happens to run), CPF_HOLDERS and CPF_BALANCES (optional, but a first
campaign without them credits wrongly for good: flows.steps.input_notes); relative paths are
made absolute against the directory serve starts in. The served
deployment has its own name (``served_deployment_name``), so it never takes over the one
``prefect deploy`` registers for a work pool (prefect.yaml).
"""

from __future__ import annotations

import os
import sys

from prefect.client.schemas.schedules import CronSchedule

from flows.campaign import campaign, operations

REQUIRED = ("CPF_LAKE", "CPF_DSN_DIR")
OPTIONAL = {"CPF_HOLDERS": "holders", "CPF_BALANCES": "balances"}


def parameters(env: dict[str, str]) -> dict:
    """The deployment's parameters from the environment; ValueError naming what is missing."""
    missing = [k for k in REQUIRED if not env.get(k, "").strip()]
    if missing:
        raise ValueError(f"flows.serve: set {' and '.join(missing)} (the lake folder DIR and the "
                         "folder the DSN arrive in), e.g. CPF_LAKE=/data/cpf "
                         "CPF_DSN_DIR=/data/inbox python -m flows.serve")
    absolute = lambda k: os.path.abspath(env[k])  # noqa: E731 (runs may start elsewhere)
    return {"lake": absolute("CPF_LAKE"), "dsn": [absolute("CPF_DSN_DIR")],
            **{name: absolute(k) for k, name in OPTIONAL.items() if env.get(k, "").strip()},
            "enforce_window": True, "force": False}


def main() -> None:
    ops = operations()
    try:
        params = parameters(dict(os.environ))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    campaign.serve(
        name=ops["served_deployment_name"],
        schedules=[CronSchedule(cron=ops["cron"], timezone=ops["timezone"])],
        global_limit=ops["concurrency_limit"],
        parameters=params,
        tags=["cpf", "campaign"],
    )


if __name__ == "__main__":
    main()
