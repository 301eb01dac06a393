"""Serve the campaign deployment without a work pool: ``python -m flows.serve``.

Schedule, timezone and concurrency come from flows/operations.yaml (operations settings, not
law). The scheduled run credits the previous calendar year with ``enforce_window=True``: reruns
inside the window (15 April - 20 June), refused outside unless an operator passes ``force=True``.
"""

from __future__ import annotations

import os

from prefect.client.schemas.schedules import CronSchedule

from flows.campaign import campaign, operations


def main() -> None:
    ops = operations()
    campaign.serve(
        name=ops["deployment_name"],
        schedules=[CronSchedule(cron=ops["cron"], timezone=ops["timezone"])],
        global_limit=ops["concurrency_limit"],
        parameters={"lake": os.environ.get("CPF_LAKE", "out"),
                    "dsn": [os.environ.get("CPF_DSN_DIR", "inbox")],
                    "enforce_window": True, "force": False},
        tags=["cpf", "campaign"],
    )


if __name__ == "__main__":
    main()
