"""The archive of ingested inputs: one bundle per commit, orphans removed, copies checked."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import parsers.ingest as ingest_mod
from parsers import archive
from parsers.ingest import ingest_paths
from parsers.lake import scan


def _inputs(tmp_path, dsn, n: int):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(n):
        nir = f"1850775123{i + 1:03d}"  # order number 001..: 000 is not a valid NIR
        body = dsn.EMPLOYEE.replace("1850775123456", nir)
        dsn.write(src, f"m{i}.dsn", dsn.envoi(dsn.declaration(body, siren="123456782",
                                                             nic=f"{i + 1:05d}")))
    return src


def _batch_of(root):
    return dict(scan(root, "files").select("file_sha256", "batch_id").collect().iter_rows())


def _wanted(batch_of: dict, shas: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"file_sha256": shas, "batch_id": [batch_of.get(s) for s in shas]},
                        schema={"file_sha256": pl.String, "batch_id": pl.String})


def test_each_commit_has_its_bundle_and_replay_reads_it(tmp_path, dsn, monkeypatch):
    monkeypatch.setattr(ingest_mod, "BATCH_MAX_FILES", 2)  # several parse batches (row groups)
    src = _inputs(tmp_path, dsn, 5)
    root = tmp_path / "DIR"
    r = ingest_paths([src], root, n_buckets=4, workers=1)
    bundles = sorted((root / "archive" / "dsn").iterdir())
    assert [archive.bundle_batch_id(b) for b in bundles] == sorted(r.batches)
    assert pq.ParquetFile(bundles[0]).num_row_groups == 3  # one per parse batch of 2 files
    batch_of = _batch_of(root)
    found = archive.locate(root, _wanted(batch_of, list(batch_of)))
    assert not found.missing and not found.files and len(found) == 5
    got = [s for b in found.batches for s in archive.read_archived(b)]
    originals = {p.read_bytes() for p in src.iterdir()}
    assert {s.data for s in got} == originals and {s.sha256 for s in got} == set(batch_of)
    # a legacy per-file copy is used when present; an unknown checksum is reported missing
    legacy = root / "archive" / "dsn" / ("0" * 64)
    legacy.write_bytes(b"x")
    found = archive.locate(root, _wanted(batch_of, ["0" * 64, "f" * 64]))
    assert found.files == [legacy] and found.missing == ["f" * 64]


def test_a_changed_archived_byte_fails_the_read(tmp_path, dsn):
    root = tmp_path / "DIR"
    ingest_paths([_inputs(tmp_path, dsn, 2)], root, n_buckets=4, workers=1)
    (bundle,) = (root / "archive" / "dsn").iterdir()
    table = pq.read_table(bundle)
    data = table.column("data").to_pylist()
    data[1] = data[1].replace(b"DUPONT", b"DUPOND")
    pq.write_table(table.set_column(3, "data", pa.array(data, pa.large_binary())), bundle)
    batch_of = _batch_of(root)
    found = archive.locate(root, _wanted(batch_of, list(batch_of)))
    with pytest.raises(archive.ArchiveError, match="does not match its sha256"):
        [archive.read_archived(b) for b in found.batches]


def test_a_commit_that_fails_leaves_an_orphan_bundle_the_next_run_removes(tmp_path, dsn,
                                                                          monkeypatch):
    src = _inputs(tmp_path, dsn, 3)
    root = tmp_path / "DIR"

    def crash(*args, **kwargs):
        raise OSError("simulated crash")

    with monkeypatch.context() as m:
        m.setattr(ingest_mod, "write_parsed", crash)  # after the bundle is in place
        with pytest.raises(OSError, match="simulated crash"):
            ingest_paths([src], root, n_buckets=4, workers=1)
    (orphan,) = (root / "archive" / "dsn").iterdir()
    assert archive.bundle_batch_id(orphan) is not None
    r = ingest_paths([src], root, n_buckets=4, workers=1)  # nothing was committed: all again
    assert r.files_ingested == 3 and not orphan.exists()
    (bundle,) = (root / "archive" / "dsn").iterdir()
    assert archive.bundle_batch_id(bundle) == r.batches[0]
    assert pq.read_table(bundle).num_rows == 3


def test_a_crediting_run_first_repairs_a_crashed_ingestion(tmp_path, dsn, monkeypatch):
    """Parts written by an ingestion that crashed before its commit are not the lake's: the
    next crediting run (``steps.prepare``, under the DIR lock) removes them before reading."""
    from flows import steps

    src = _inputs(tmp_path, dsn, 2)
    first, second = sorted(src.iterdir())
    root = tmp_path / "DIR"
    ingest_paths([first], root, n_buckets=4, workers=1)
    committed = scan(root, "contracts").collect()["nir"].to_list()

    def crash(df, target):
        if target.parent.name == "files":
            raise OSError("simulated crash")
        return real(df, target)

    import parsers.lake as lake_mod
    real = lake_mod._atomic_write
    with monkeypatch.context() as m:
        m.setattr(lake_mod, "_atomic_write", crash)  # every part written, the commit not
        with pytest.raises(OSError, match="simulated crash"):
            ingest_paths([second], root, n_buckets=4, workers=1)
    assert len(scan(root, "contracts").collect()) == 2  # the uncommitted part is on disk
    assert len(list((root / "archive" / "dsn").iterdir())) == 2
    steps.prepare(root, 2025)
    assert scan(root, "contracts").collect()["nir"].to_list() == committed
    (bundle,) = (root / "archive" / "dsn").iterdir()
    assert archive.bundle_batch_id(bundle) in set(_batch_of(root).values())
