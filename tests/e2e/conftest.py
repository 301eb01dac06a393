"""End-to-end tests. Every e2e test is marked ``prefect`` and uses the session-scoped
``prefect_harness`` fixture of tests/conftest.py (shared with tests/scale). Run them alone with
``pytest -m prefect``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"


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
