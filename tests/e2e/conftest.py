"""End-to-end tests: ONE Prefect test harness for the whole session (it costs ~15 s).

Every e2e test is marked ``prefect`` and uses the ``prefect_harness`` fixture; the harness starts
only when the first of them runs. Run them alone with ``pytest -m prefect``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from prefect.testing.utilities import prefect_test_harness
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def upstream_ready():
    """The e2e path needs the real ingestion and crediting engine."""
    try:
        import parsers.ingest  # noqa: F401
        import parsers.n4ds_xml  # noqa: F401
        import pipeline.credits  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"upstream not available yet: {exc}")
    if not SAMPLES.exists():
        pytest.skip("data/samples missing")
    return SAMPLES
