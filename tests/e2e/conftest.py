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
def samples_dir() -> Path:
    """The project's DSN samples (the e2e input): missing samples fail the test, never skip it."""
    assert SAMPLES.is_dir() and any(SAMPLES.glob("*.dsn")), f"no DSN samples under {SAMPLES}"
    return SAMPLES
