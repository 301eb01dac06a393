"""Batch reading and parse/commit batching give the same result as file-by-file work."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from parsers import ingest
from parsers.records import read_batch, read_lines, read_split_batch, split_lines


def test_read_batch_matches_per_file():
    files = [b"A,'1'\nB,'2'\r\n", b"", b"C,'3'", b"\n\n", b"D,'4'\nE,'5'\n"]
    batch = read_batch(files)
    expected = pl.concat([
        read_lines(f).with_columns(pl.lit(i, pl.Int64).alias("file_idx")) for i, f in enumerate(files)
    ]).select("file_idx", "line_no", "raw")
    assert batch.equals(expected)
    assert batch.height == 7


def test_read_split_batch_matches_polars_split():
    """The NumPy/string-view reader gives the lines, ids, values, flags and codes of the Polars
    CSV read + split (``raw`` is only kept for malformed lines)."""
    long_utf8 = "S21.G00.30.002,'" + "é" * 250 + "'"  # <= 256 characters, > 256 bytes
    files = [
        b"A,'1'\nB,'2'\r\n", b"", b"S10.G00.00.001,'X'", b"\n\n",
        ("S21.G00.30.002,'JOËL'\r\nS21.G00.30.00X,'a'\nS99.G00.30.001,'x'\n"
         "S21.G00.30.001,''\nS21.G00.30.001,'\nS21.G00.30.001,'ab'c'\nS21.G00.30.001,'\r\n\r\n"
         + long_utf8 + "\n" + "S21.G00.30.002,'" + "e" * 250 + "'\n"
         + "S21.G00.30.002,'" + "é" * 241 + "'\n" + "S21.G00.30.002,'" + "x" * 12 + "'\n").encode(),
        "\x1fx\r\r\n\u0085S21\nS21.G00.3É.001,'v'\nS21.G00.30.001,'a\ufffdb'".encode(),
    ]
    for damaged in (None, [5], []):
        old = split_lines(read_batch(files), damaged_files=damaged)
        new = read_split_batch(files, damaged_files=damaged)
        old = old.with_columns(pl.when(pl.col("malformed")).then(pl.col("raw")).alias("raw"),
                               pl.col("static_code").cast(pl.UInt32))
        assert new.select(old.columns).equals(old)
    assert read_split_batch([b"", b""]).height == 0


def test_small_parse_batches_same_counts(tmp_path, monkeypatch):
    src = Path(__file__).resolve().parents[2] / "data" / "samples"
    files = sorted(src.glob("*.dsn"))[:6]
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    whole = ingest.ingest_paths([tmp_path], tmp_path / "a")
    monkeypatch.setattr(ingest, "BATCH_MAX_BYTES", 1)  # one file per parse batch
    monkeypatch.setattr(ingest, "COMMIT_MAX_FILES", 4)  # two commits
    split = ingest.ingest_paths([tmp_path], tmp_path / "b")
    assert len(split.batches) == 2
    for attr in ("lines_read", "lines_parsed", "lines_quarantined", "declarations", "warnings"):
        assert getattr(whole, attr) == getattr(split, attr)
    assert split.lines_read == split.lines_parsed + split.lines_quarantined


def test_process_pool_gives_the_same_lake(tmp_path, monkeypatch):
    """workers=2 (spawned parse processes, results taken in submission order) writes the same
    rows as workers=1; month ordering and background commits included."""
    from parsers.lake import scan
    from parsers.lake_schema import TABLES

    src = Path(__file__).resolve().parents[2] / "data" / "samples"
    files = sorted(src.glob("*.dsn"))[:6]
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    monkeypatch.setattr(ingest, "BATCH_MAX_BYTES", 1)  # one file per parse batch
    monkeypatch.setattr(ingest, "COMMIT_MAX_FILES", 4)  # two commits
    one = ingest.ingest_paths([tmp_path], tmp_path / "one", workers=1)
    two = ingest.ingest_paths([tmp_path], tmp_path / "two", workers=2)
    assert one.batches and len(two.batches) == len(one.batches) == 2
    for attr in ("lines_read", "lines_parsed", "lines_quarantined", "declarations", "warnings",
                 "quarantine_by_reason", "files_ingested"):
        assert getattr(one, attr) == getattr(two, attr)
    for table in TABLES:
        a = scan(tmp_path / "one", table).collect().drop("batch_id", "ingested_at", strict=False)
        b = scan(tmp_path / "two", table).collect().drop("batch_id", "ingested_at", strict=False)
        assert a.sort(a.columns, nulls_last=True).equals(b.sort(b.columns, nulls_last=True)), table


def test_an_inbox_follows_linked_folders_and_refuses_dangling_links(tmp_path):
    """operator acceptance pass F2: a month's transfer folder linked into the inbox was skipped
    without a word (Path.rglob does not follow links), and a link to nothing was not named."""
    import pytest

    from parsers.ingest import UnreadableInputs, discover

    (tmp_path / "transfer" / "m05").mkdir(parents=True)
    (tmp_path / "transfer" / "m05" / "a_202505.dsn").write_text("x")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a_202501.dsn").write_text("x")
    (inbox / "m05").symlink_to(tmp_path / "transfer" / "m05")
    (inbox / "m05_again").symlink_to(tmp_path / "transfer" / "m05")  # one real folder, once
    (inbox / "up").symlink_to(inbox)  # a loop does not loop
    found, skipped = discover([inbox])
    assert [f.name for f in found] == ["a_202501.dsn", "a_202505.dsn"] and skipped == []
    (inbox / "latest.log").symlink_to(tmp_path / "nowhere.log")  # not a DSN name: skipped
    assert discover([inbox])[1] == [inbox / "latest.log"]
    (inbox / "gone.dsn").symlink_to(tmp_path / "nowhere.dsn")
    with pytest.raises(UnreadableInputs, match="gone.dsn: a link to nothing"):
        discover([inbox])
