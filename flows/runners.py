"""Execution backends for the flows, chosen by configuration (same flow code).

``thread``  Prefect ``ThreadPoolTaskRunner`` (tests, tiny lakes: no process start-up cost);
``process`` Prefect ``ProcessPoolTaskRunner`` (default for big runs: one Python process per
            concurrent bucket shard, so the GIL and Polars' allocator are per shard);
``dask``    prefect-dask ``DaskTaskRunner``: a ``LocalCluster`` (n_workers, 1 thread each) or an
            existing cluster at ``--dask-address`` (the lake DIR must then be shared storage seen
            at the same path by every worker).

Settings (CLI option > environment variable > default):

| option | env | default |
|---|---|---|
| ``--runner`` | ``CPF_RUNNER`` | ``auto``: ``process`` when the lake's person tables exceed ``CPF_BIG_LAKE_MB`` (256), else ``thread`` |
| ``--dask-address`` | ``CPF_DASK_ADDRESS`` | none (a LocalCluster is started) |
| ``--buckets`` | ``CPF_BUCKETS`` | ``auto``: 1 shard for a small lake, else one shard per lake bucket |
| ``--max-workers`` | ``CPF_MAX_WORKERS`` | CPU count |
| ``--max-memory-gb`` | ``CPF_MAX_MEMORY_GB`` | 75 % of RAM; caps the concurrent shards (see ``plan``) |
| (worker processes) | ``POLARS_MAX_THREADS`` | the cores split between the concurrent workers (``worker_environment``) |

Tasks exchange paths and small dicts only, and every task function is a module-level function of
``flows.campaign`` (importable in a worker process), so the three backends run the same code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

RUNNERS = ("auto", "thread", "process", "dask")
BIG_LAKE_MB = float(os.environ.get("CPF_BIG_LAKE_MB", "256"))
# RSS model of one shard task (measured by benchmarks/bench_scale.py, see docs/scaling.md):
# fixed interpreter + Polars + Prefect cost, plus a multiple of the shard's Parquet bytes.
SHARD_BASE_GB = 0.45
SHARD_RSS_PER_LAKE_BYTE = 12.0
# Every crediting process also holds the current declarations its shard's rows refer to
# (benchmarks/bench_declarations.py: ~0.19 GB per million declarations held).
PROCESS_GB_PER_MILLION_DECLARATIONS = 0.19
_BUCKET_DIR = re.compile(r"^bucket=(\d+)$")


@dataclass
class Plan:
    runner: str  # thread | process | dask
    shards: int  # number of crediting shards (1 = unsharded legacy path)
    workers: int  # concurrent shards
    lake_buckets: list[int]
    lake_mb: float
    est_shard_gb: float
    declarations: int = 0  # rows of the lake's declarations table
    people_per_declaration: float = 0.0  # individuals rows / declarations rows of the lake
    dask_address: str | None = None
    shards_requested: int | None = None  # --buckets / CPF_BUCKETS above the lake's buckets

    def to_dict(self) -> dict:
        return asdict(self)

    def note(self) -> str | None:
        """Said when the shards asked for could not be honoured (a shard is at least one
        lake bucket: ``cpf ingest --lake-buckets`` fixes their number)."""
        if self.shards_requested is None:
            return None
        return (f"{self.shards_requested} shards asked for, but the lake has "
                f"{len(self.lake_buckets)} person bucket(s): {self.shards} shard(s) used")


def lake_buckets(root: Path) -> dict[int, int]:
    """{bucket id: bytes of person-table Parquet in it} from lake/<table>/month=*/bucket=NNN/."""
    from parsers.lake_schema import PERSON_TABLES
    out: dict[int, int] = {}
    lake = Path(root) / "lake"
    for t in PERSON_TABLES:
        base = lake / t
        if not base.is_dir():
            continue
        for month in base.iterdir():
            if not month.is_dir():
                continue
            for b in month.iterdir():
                m = _BUCKET_DIR.match(b.name)
                if m and b.is_dir():
                    n = sum(f.stat().st_size for f in b.glob("*.parquet"))
                    out[int(m.group(1))] = out.get(int(m.group(1)), 0) + n
    return out


def lake_rows(root: Path, table: str) -> int:
    """Rows of a lake table (Parquet metadata only), for sizing. Read before the run takes the
    DIR lock, so a part a crashed ingestion left unfinished is skipped here (the run removes
    it under the lock, ``parsers.ingest.repair_lake``) instead of failing with a traceback."""
    import pyarrow.parquet as pq

    from parsers.lake import lake_path
    rows = 0
    for part in sorted((lake_path(root) / table).rglob("*.parquet")):
        try:
            rows += pq.ParquetFile(part).metadata.num_rows
        except Exception:  # unreadable leftover: not the lake's (see above)
            continue
    return rows


def declarations_share(people_per_declaration: float, shards: int) -> float:
    """Share of the lake's declarations one shard's rows refer to (people spread evenly over
    the shards): a declaration of p people reaches a shard with odds 1 − (1 − 1/shards)^p."""
    return 1 - (1 - 1 / max(1, shards)) ** max(1.0, people_per_declaration)


def _total_ram_gb() -> float:
    try:
        import psutil
        return psutil.virtual_memory().total / 2**30
    except Exception:  # pragma: no cover
        return 8.0


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    return int(v) if v not in (None, "", "auto") else None


def plan(root: Path, runner: str | None = None, buckets: int | None = None,
         max_workers: int | None = None, max_memory_gb: float | None = None,
         dask_address: str | None = None) -> Plan:
    """Resolve the settings for DIR: runner, number of shards, concurrency.

    Memory cap: a shard is estimated at ``SHARD_BASE_GB + SHARD_RSS_PER_LAKE_BYTE × its lake
    bytes`` plus the declarations its rows refer to (``PROCESS_GB_PER_MILLION_DECLARATIONS`` ×
    the lake's declarations × ``declarations_share``); shards are added (up to one per lake
    bucket) until the largest fits in ``max_memory_gb / workers``, then workers are reduced
    until ``workers × shard ≤ cap``."""
    runner = runner or os.environ.get("CPF_RUNNER") or "auto"
    if runner not in RUNNERS:
        raise ValueError(f"runner {runner!r} is not one of {', '.join(RUNNERS)}")
    dask_address = dask_address or os.environ.get("CPF_DASK_ADDRESS") or None
    sizes = lake_buckets(root)
    ids = sorted(sizes)
    lake_mb = sum(sizes.values()) / 2**20
    big = lake_mb > BIG_LAKE_MB
    if runner == "auto":
        runner = "dask" if dask_address else ("process" if big else "thread")
    workers = max_workers or _env_int("CPF_MAX_WORKERS") or (os.cpu_count() or 1)
    cap = max_memory_gb or (float(os.environ["CPF_MAX_MEMORY_GB"])
                            if os.environ.get("CPF_MAX_MEMORY_GB") else 0.75 * _total_ram_gb())
    n = buckets or _env_int("CPF_BUCKETS")
    if not ids:
        n = 1  # a lake without bucket partitions (hand-built fixtures): unsharded
    elif n is None:
        n = len(ids) if big else 1
    asked = n
    n = max(1, min(n, max(ids) + 1 if ids else 1))
    requested = asked if asked is not None and asked > n and ids else None

    n_decls = lake_rows(root, "declarations")
    ppd = lake_rows(root, "individuals") / n_decls if n_decls else 0.0

    def est(k: int) -> float:
        per = [sum(sizes[b] for b in ids if b % k == s) for s in range(k)]
        held = PROCESS_GB_PER_MILLION_DECLARATIONS * n_decls * declarations_share(ppd, k) / 1e6
        return SHARD_BASE_GB + held + SHARD_RSS_PER_LAKE_BYTE * max(per or [0]) / 2**30

    if buckets is None and _env_int("CPF_BUCKETS") is None and ids:
        while n < max(ids) + 1 and est(n) * min(workers, n) > cap:
            n = min(max(ids) + 1, n * 2)
    shard_gb = est(n)
    workers = max(1, min(workers, n, int(cap // shard_gb) if shard_gb > 0 else workers))
    return Plan(runner=runner, shards=n, workers=workers, lake_buckets=ids, lake_mb=round(lake_mb, 1),
                est_shard_gb=round(shard_gb, 2), declarations=n_decls,
                people_per_declaration=round(ppd, 1),
                dask_address=dask_address, shards_requested=requested)


def worker_env(workers: int) -> dict[str, str]:
    """Environment of a crediting worker process: Polars' thread pool sized to its share of the
    cores (``POLARS_MAX_THREADS``, unless the operator set it). Each worker defaults to one
    thread per core, so k workers would run k × cores threads on the same cores; on this 2-core
    machine 2 one-thread workers credited the 1 M lake 1.04–1.13× faster than 2 two-thread
    ones and 1.15–1.31× faster than one two-thread worker (``benchmarks/results/credit.md``)."""
    if os.environ.get("POLARS_MAX_THREADS"):
        return {"POLARS_MAX_THREADS": os.environ["POLARS_MAX_THREADS"]}
    return {"POLARS_MAX_THREADS": str(max(1, (os.cpu_count() or 1) // max(1, workers)))}


def local_api_env() -> dict[str, str]:
    """In Prefect's local mode (no ``PREFECT_API_URL`` configured), the URL of this process's
    temporary server, for its worker processes: without it each worker process starts a
    temporary server of its own when its first task runs (~7 s before that task and ~0.2 GB
    per worker, measured) and reports its task runs there instead of to the flow's server."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED
    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return {}
    from prefect.server.api.server import SubprocessASGIServer
    server = SubprocessASGIServer()  # the process's one temporary server (the flows' own)
    server.start()  # no-op when a flow of this process already started it
    return {"PREFECT_API_URL": server.api_url}


@contextmanager
def worker_environment(p: Plan) -> Iterator[None]:
    """While a flow runs on ``p``'s process pool or local Dask cluster, this process's
    environment carries ``worker_env`` and ``local_api_env``, so every worker process it
    spawns inherits them from birth. (A pool initializer or Dask's ``env`` set them only after
    the child has imported the parent's ``__main__`` — the ``cpf`` script imports Polars, which
    then sizes its pool first.) This process keeps the pool it already has; the environment is
    restored afterwards."""
    if p.runner == "thread" or p.dask_address:
        yield
        return
    import polars as pl
    pl.thread_pool_size()  # this process's pool is sized now, before the variable changes
    env = worker_env(p.workers) | local_api_env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def task_runner(p: Plan):
    """The Prefect task runner for a plan (run the flow inside ``worker_environment``)."""
    if p.runner == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner
        return ThreadPoolTaskRunner(max_workers=p.workers)
    if p.runner == "process":
        from prefect.task_runners import ProcessPoolTaskRunner
        return ProcessPoolTaskRunner(max_workers=p.workers)
    if p.runner == "dask":
        from prefect_dask import DaskTaskRunner
        if p.dask_address:
            return DaskTaskRunner(address=p.dask_address)
        return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                              cluster_kwargs={"n_workers": p.workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None,
                                              "memory_limit": None})
    raise ValueError(p.runner)
