"""Ingestion's memory of committed files: 128 bits of each sha256 in sorted NumPy words, not a
set of strings (``parsers.lake.KnownChecksums``), with the same answers."""

from __future__ import annotations

import hashlib
from pathlib import Path

from parsers.ingest import ingest_paths
from parsers.lake import known_checksums, scan

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


def test_known_checksums_answers_like_the_set(tmp_path):
    root = tmp_path / "DIR"
    ingest_paths(sorted(SAMPLES.glob("*_2025010*.dsn")) + sorted(SAMPLES.glob("*_202502_11.dsn")),
                 root, workers=1)
    committed = scan(root, "files").select("file_sha256").collect().to_series().to_list()
    known = known_checksums(root)
    assert len(known) == len(set(committed)) > 0
    assert all(sha in known for sha in committed)
    other = hashlib.sha256(b"not ingested").hexdigest()
    assert other not in known
    for sha in committed:  # same first 64 bits, or same first 128 bits, other bytes after
        flip = lambda i: sha[:i] + ("0" if sha[i] != "0" else "1") + sha[i + 1:]  # noqa: E731
        assert flip(20) not in known  # differs in the second word: not known
        assert flip(40) in known  # differs after the 128 bits compared: taken as known
    known.add(other)
    assert other in known and len(known) == len(set(committed)) + 1
    assert known_checksums(tmp_path / "empty").__len__() == 0
