"""The lake's write-time settings, fixed by its first ingestion: the person bucket count.

Why: a person's rows land in bucket ``person_bucket(N)`` of their NIR; ingesting later months
with another N would split people across buckets and make every shard's result wrong. So N is
written once to ``DIR/lake/settings.json`` (atomically) and every later ingestion, crediting
shard and replay reads it; asking for another N is refused with a clear error. A lake written
before this file existed was written with ``DEFAULT_BUCKETS``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from parsers.lake import lake_path
from parsers.lake_schema import DEFAULT_BUCKETS

SETTINGS_FILE = "settings.json"
MAX_BUCKETS = 4096  # at most one partition directory per bucket and month: keep it sane


class LakeSettingsError(ValueError):
    """A request that contradicts the lake's fixed settings."""


def settings_path(root_dir: Path | str) -> Path:
    return lake_path(root_dir) / SETTINGS_FILE


def bucket_count(root_dir: Path | str) -> int:
    """The lake's person bucket count (``DEFAULT_BUCKETS`` for a lake without settings)."""
    path = settings_path(root_dir)
    if not path.exists():
        return DEFAULT_BUCKETS
    return int(json.loads(path.read_text())["n_buckets"])


def fix_bucket_count(root_dir: Path | str, requested: int | None = None,
                     record: bool = True) -> int:
    """The bucket count to ingest with: the lake's own when it has one (``requested`` must then
    agree), else ``requested`` (or the default), recorded now for every later ingestion
    (``record=False``: only check, e.g. before starting a flow)."""
    if requested is not None and not 1 <= requested <= MAX_BUCKETS:
        raise LakeSettingsError(f"bucket count {requested} outside 1..{MAX_BUCKETS}")
    path = settings_path(root_dir)
    if path.exists():
        current = bucket_count(root_dir)
        if requested is not None and requested != current:
            raise LakeSettingsError(
                f"the lake {lake_path(root_dir)} was written with {current} person buckets; "
                f"it cannot take {requested} (re-ingest into a new lake to change it)")
        return current
    if (lake_path(root_dir) / "files").exists():  # data written before settings existed
        if requested is not None and requested != DEFAULT_BUCKETS:
            raise LakeSettingsError(
                f"the lake {lake_path(root_dir)} already holds data written with "
                f"{DEFAULT_BUCKETS} person buckets; it cannot take {requested}")
    n = requested or DEFAULT_BUCKETS
    if not record:
        return n
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SETTINGS_FILE}.tmp")
    tmp.write_text(json.dumps({"n_buckets": n, "bucket_rule": "int(NIR characters 8-13) mod n_buckets"},
                              indent=1) + "\n")
    os.replace(tmp, path)
    return n
