"""Sharded crediting: the same small year through the thread runner, the process pool and a
Dask LocalCluster (2 workers × 1 thread) gives BYTE-IDENTICAL ledgers and snapshots, and the
same rows as the unsharded path. Plus the sharding invariant: a person never spans buckets."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import polars as pl
import pytest

from parsers.lake_schema import PERSON_TABLES, person_bucket

pytestmark = pytest.mark.prefect
AS_OF = "2026-04-15"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """A generated year (60 people, 4 employers: some people have two employers) ingested
    once into a template DIR (16 lake buckets)."""
    try:
        from generator.year import generate_year
        from flows import steps
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"upstream not available: {exc}")
    base = tmp_path_factory.mktemp("scale")
    generate_year(base / "dsn", seed=7, people=60, employers=4, year=2025)
    steps.ingest_files([base / "dsn"], base / "template")
    return base


def _copy(base, name):
    dst = base / name
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(base / "template", dst)
    return dst


def test_a_person_never_spans_buckets(ingested):
    lake = ingested / "template" / "lake"
    rows = []
    for t in PERSON_TABLES:
        files = sorted((lake / t).rglob("*.parquet"))
        if files:
            rows.append(pl.scan_parquet(files, hive_partitioning=True)
                        .select("nir", pl.col("bucket").cast(pl.Int32)).collect())
    df = pl.concat(rows).filter(pl.col("nir").is_not_null())
    per = df.group_by("nir").agg(pl.col("bucket").n_unique().alias("n"), pl.col("bucket").first())
    assert per["n"].max() == 1  # one bucket per person, across tables, months and employers
    expect = per.select("nir", person_bucket(16).alias("b"), "bucket")
    assert expect.filter(pl.col("b") != pl.col("bucket")).height == 0  # bucket derives from NIR
    # somebody declared by two employers (two SIRET) still sits in one bucket
    con = pl.scan_parquet(sorted((lake / "contracts").rglob("*.parquet")),
                          hive_partitioning=False).collect()
    multi = con.group_by("nir").agg(pl.col("siret").n_unique().alias("k")).filter(pl.col("k") > 1)
    assert multi.height > 0


def test_runners_give_byte_identical_ledgers(prefect_harness, ingested, monkeypatch):
    from flows import steps
    from flows.campaign import credit_with_plan
    from flows.runners import worker_env
    from pipeline import publish as pub
    from pipeline.ledger import conform
    warnings.filterwarnings("ignore")
    # the checkout may be edited while the test runs: pin the code version for every process
    monkeypatch.setenv("CPF_CODE_VERSION", pub.code_version())
    results = {}
    threads_before = os.environ.get("POLARS_MAX_THREADS")
    for runner in ("thread", "process", "dask"):
        root = _copy(ingested, runner)
        out = credit_with_plan(2025, str(root), as_of=AS_OF, runner=runner, buckets=4,
                               max_workers=2)
        assert out["plan"]["runner"] == runner and out["plan"]["shards"] == 4
        m = out["manifest"]
        log = json.loads((root / "runs" / out["run_id"] / "run_log.json").read_text())
        assert len(log["shards"]) == 4
        if runner != "thread":  # worker processes split the cores between them
            assert {s["polars_threads"] for s in log["shards"]} == {
                int(worker_env(2)["POLARS_MAX_THREADS"])}
        assert os.environ.get("POLARS_MAX_THREADS") == threads_before  # restored after the flow
        results[runner] = (out["run_id"], m["files_sha256"], m["counts"], m["totals_cents"],
                           pub.entries_path(root, out["run_id"]).read_bytes())
    ref = results["thread"]
    assert ref[2]["examined"] > 0 and ref[2]["entries"] > 0
    for runner in ("process", "dask"):
        assert results[runner] == ref, runner  # same run id, checksums, counts, ledger bytes
    # same rows as the unsharded (legacy, whole-year) path
    flat = _copy(ingested, "flat")
    legacy = steps.credit(flat, 2025, as_of=dt.date.fromisoformat(AS_OF))
    assert legacy.run_id == ref[0]
    sharded_root = ingested / "thread"
    e1 = conform(pl.read_parquet(pub.entries_path(sharded_root, ref[0])))
    e2 = conform(pl.read_parquet(pub.entries_path(flat, legacy.run_id)))
    assert e1.equals(e2)
    a1 = pl.read_parquet(pub.run_dir(sharded_root, ref[0]) / "annual_credits.parquet").sort("nir")
    a2 = pl.read_parquet(pub.run_dir(flat, legacy.run_id) / "annual_credits.parquet")
    assert a1.equals(a2)
    assert legacy.manifest["counts"] == ref[2] and legacy.manifest["totals_cents"] == ref[3]
    # replay of a sharded run reproduces it byte for byte
    res = steps.replay(sharded_root, 2025)
    assert res.ok, res.differences


def test_sharded_rerun_reads_history_by_shard_and_posts_only_differences(ingested, tmp_path):
    """Second run on top of a sharded ledger: each shard reads only its row groups of the
    published entries file (pub.shard_entries), and a late correction (a holder's
    low-qualified declaration) posts one adjustment, the same rows as the unsharded path."""
    from flows import steps
    from flows.steps import shard_expr
    from pipeline import publish as pub
    from pipeline.ledger import conform
    warnings.filterwarnings("ignore")
    as_of = dt.date.fromisoformat(AS_OF)
    sharded, flat = _copy(ingested, "rerun-sharded"), _copy(ingested, "rerun-flat")
    # opening balances (read by each shard from the run's bucketed copy): people of every
    # shard, and one account with no DSN at all
    from pipeline.lake_reads import scan_table
    nirs = (scan_table(sharded, "contracts").select("nir").drop_nulls().unique().sort("nir")
            .collect()["nir"].to_list()[:12]) + ["2990175999998"]
    bal = tmp_path / "balances.csv"
    bal.write_text("nir,earned_balance_cents\n"
                   + "".join(f"{n},{10000 * (i + 1)}\n" for i, n in enumerate(nirs)))
    heard: list[str] = []
    first = steps.credit_sharded(sharded, 2025, shards=4, as_of=as_of, balances=bal,
                                 on_step=heard.append)
    assert [h for h in heard if "shard" in h] == (
        [f"computing shard {s}/4" for s in range(1, 5)]
        + [f"posting shard {s}/4" for s in range(1, 5)])  # what the CLI's status line shows
    first_flat = steps.credit(flat, 2025, as_of=as_of, balances=bal)
    e = conform(pl.read_parquet(pub.entries_path(sharded, first.run_id)))
    assert e.equals(conform(pl.read_parquet(pub.entries_path(flat, first_flat.run_id))))
    opened = e.filter(pl.col("kind") == "opening_balance_import")
    assert sorted(opened["nir"]) == sorted(nirs)
    assert opened.select(shard_expr(4, 16)).to_series().n_unique() > 1
    cur = pub.read_current(sharded)
    assert cur["published"][0]["entries_shards"] == 4
    whole = pub.published_entries(sharded)
    for shards in (4, 2, 3, 1):  # 3 does not divide 4: the scan fallback gives the same rows
        got = [pub.shard_entries(sharded, s, shards, shard_expr(shards, 16) == s)
               for s in range(shards)]
        assert sum(g.height for g in got) == whole.height
        assert conform(pl.concat(got)).equals(whole), shards
    # rerun on unchanged data: nothing posted
    assert steps.credit_sharded(sharded, 2025, shards=4, as_of=as_of).manifest["counts"][
        "entries"] == 0
    # late correction: somebody credited at the standard rate declares low qualification
    ac = pl.read_parquet(pub.run_dir(sharded, first.run_id) / "annual_credits.parquet")
    who = ac.filter((pl.col("category") == "standard") & (pl.col("worked_ratio") >= 0.5))[
        "nir"][0]
    holders = tmp_path / "holders.csv"
    holders.write_text("nir,low_qualified_declared_on,low_qualified_withdrawn_on\n"
                       f"{who},2024-03-01,\n")
    late = steps.credit_sharded(sharded, 2025, shards=4, holders=holders, as_of=as_of)
    steps.credit(flat, 2025, as_of=as_of)  # keep the sequence numbers aligned
    late_flat = steps.credit(flat, 2025, holders=holders, as_of=as_of)
    e = conform(pl.read_parquet(pub.entries_path(sharded, late.run_id)))
    assert e.select("nir", "kind", "amount_cents").rows() == [(who, "adjustment_credit", 30000)]
    assert e.equals(conform(pl.read_parquet(pub.entries_path(flat, late_flat.run_id))))


SPAWN_CHECK = """
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import polars as pl  # like the cpf script: the parent's __main__ imports Polars

from flows.runners import Plan, worker_env, worker_environment


def child():
    return pl.thread_pool_size(), os.environ.get("PREFECT_API_URL")


if __name__ == "__main__":
    from prefect.server.api.server import SubprocessASGIServer
    p = Plan(runner="process", shards=2, workers=2, lake_buckets=[0, 1], lake_mb=0.0,
             est_shard_gb=0.1)
    before = pl.thread_pool_size()
    with worker_environment(p):
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
            got = sorted({f.result() for f in [ex.submit(child) for _ in range(4)]})
    print(json.dumps({"before": before, "after": pl.thread_pool_size(), "got": got,
                      "want": int(worker_env(2)["POLARS_MAX_THREADS"]),
                      "server": SubprocessASGIServer().api_url,
                      "env_after": os.environ.get("PREFECT_API_URL")}))
"""


def test_spawned_workers_get_their_cores_and_the_flows_server(tmp_path):
    """Worker processes are born with ``worker_env`` (even when the parent's ``__main__``
    imports Polars: the child imports it too before any pool initializer could run) and, in
    Prefect's local mode, with the URL of the parent's temporary server (else each worker
    starts one of its own); the parent keeps its pool and its environment."""
    script = tmp_path / "spawn_check.py"
    script.write_text(textwrap.dedent(SPAWN_CHECK))
    env = {k: v for k, v in os.environ.items()
           if k not in ("POLARS_MAX_THREADS", "PREFECT_API_URL")}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[2]),
               PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120")
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         check=True, timeout=300).stdout.strip().splitlines()[-1]
    r = json.loads(out)
    # every worker: cores ÷ 2 threads, and the flow process's temporary server
    assert r["got"] == [[r["want"], r["server"]]] and r["server"].startswith("http://127.0.0.1:")
    assert r["after"] == r["before"] and r["env_after"] is None  # the parent is untouched


def test_a_deployment_without_its_paths_is_refused_with_the_reason(tmp_path):
    """prefect.yaml / flows.serve take the paths from CPF_LAKE / CPF_DSN_DIR: registered
    without them, a run got "" and ingested the working directory, publishing a lake there."""
    from flows import steps
    from flows.campaign import check_locations
    from flows.serve import parameters
    for lake, dsn, why in [("", [str(tmp_path)], "lake: empty path"),
                           (str(tmp_path), [""], "dsn: empty path"),
                           (str(tmp_path), [str(tmp_path / "nope")], "does not exist")]:
        with pytest.raises(steps.InputError, match=why):
            check_locations(lake, dsn)
    assert check_locations(str(tmp_path), [str(tmp_path)]) == (str(tmp_path), [str(tmp_path)])
    # a lake path that is a file, a bucket count the lake cannot take: refused as bad input
    # (no retry, one line), as the CLI does (operator acceptance pass F6)
    (tmp_path / "afile").write_text("")
    with pytest.raises(steps.InputError, match="is not a directory"):
        check_locations(str(tmp_path / "afile"), [str(tmp_path)])
    from parsers.lake_settings import fix_bucket_count
    fix_bucket_count(tmp_path / "DIR", 16)
    with pytest.raises(steps.InputError, match="cannot take 8"):
        check_locations(str(tmp_path / "DIR"), [str(tmp_path)], lake_buckets=8)
    with pytest.raises(ValueError, match="CPF_LAKE and CPF_DSN_DIR"):
        parameters({"CPF_LAKE": " "})
    got = parameters({"CPF_LAKE": "/data/cpf", "CPF_DSN_DIR": "/data/in", "CPF_HOLDERS": ""})
    assert got == {"lake": "/data/cpf", "dsn": ["/data/in"], "enforce_window": True,
                   "force": False}
    assert parameters({"CPF_LAKE": "L", "CPF_DSN_DIR": "D", "CPF_BALANCES": "b.csv"}
                      )["balances"] == os.path.abspath("b.csv")  # runs start elsewhere
    with pytest.raises(steps.InputError, match="unreadable file"):  # before any ingestion
        steps.check_inputs(tmp_path / "holders.csv", None, None)
