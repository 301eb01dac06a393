"""Small files in the lake: what commits cost per part, what compaction costs, what a crediting
shard pays to read many parts instead of one (a script, not a test).

Why: a commit writes one Parquet part per (table, month, bucket) it touches. A national month
(~150 GB of DSN) spans hundreds of commits and, with the 128 buckets the national lake needs,
each partition would collect hundreds of parts of a few kB; every crediting shard opens all of
them. The generated 1 GiB year spans 12 months in ~4 commits, so it cannot show this: here the
national shape is simulated by ingesting months 1-6 of it with small commits (``--commit-mb``,
several commits per month, like a national month's commits) and 128 buckets, compaction off,
then:

- ``ingest``   : parts written, wall / CPU seconds of the ingestion (compaction off);
- ``compact``  : ``parsers.compact.compact`` on that lake (parts merged, seconds);
- ``credit``   : ``compute_year`` of one shard (buckets b % 8 == 0) on a copy of the lake
  BEFORE compaction, then on the compacted lake (same rows) — CPU seconds and files opened.

Every stage runs in its own process. Results: benchmarks/results/compact.md (+ .json), with the
per-part costs and the national month they imply (assumptions stated there).

    python -m benchmarks.bench_compact [--mb 1024] [--commit-mb 16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WORK = HERE.parent / "bench_data" / "compact"
BUCKETS = 128  # the national lake's (README, docs/scaling.md)
SHARD_OF = 8  # the crediting shard read: buckets b with b % SHARD_OF == 0
NATIONAL_MONTH_GB = 150


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _count_parts(lake: Path) -> int:
    return sum(1 for p in lake.rglob("part-*.parquet") if "files" not in p.parts)


def stage_ingest(dsn: Path, root: Path, months: int, commit_mb: int) -> dict:
    from benchmarks.bench_ingest import _files
    from parsers import compact as C, ingest

    files = [f for f in _files(dsn) if int(f.stem.split("_")[1][4:6]) <= months]
    ingest.COMMIT_MAX_BYTES = commit_mb * 1024 * 1024
    ingest.COMMIT_SCALE_MAX = 1  # the commit size asked for, whatever the bucket count
    ingest.compact = lambda *a, **k: C.CompactReport()  # measured separately
    c0, t0 = _cpu(), time.perf_counter()
    report = ingest.ingest_paths(files, root, n_buckets=BUCKETS, workers=1)
    return {"seconds": time.perf_counter() - t0, "cpu_s": _cpu() - c0, "files": len(files),
            "mb": report.bytes_ingested / 2**20, "commits": len(report.batches),
            "parts": _count_parts(root / "lake")}


def stage_compact(root: Path) -> dict:
    from parsers.compact import compact

    c0, t0 = _cpu(), time.perf_counter()
    r = compact(root)
    return {"seconds": time.perf_counter() - t0, "cpu_s": _cpu() - c0,
            "partitions": r.partitions, "parts_before": r.parts_before,
            "parts_after": _count_parts(root / "lake")}


def stage_credit(root: Path) -> dict:
    from pipeline.credits import compute_year
    from parsers.lake_schema import PERSON_TABLES
    from pipeline.declaration_ranks import run_declarations
    from pipeline.lake_reads import bucket_parts

    buckets = [b for b in range(BUCKETS) if b % SHARD_OF == 0]
    run_declarations(root)  # per lake state, shared by every shard: not what is compared
    opened = sum(len(bucket_parts(root, t, buckets)) for t in PERSON_TABLES)
    c0, t0 = _cpu(), time.perf_counter()
    res = compute_year(root, 2025, None, buckets)
    people = res.amounts.collect().height
    res.uncreditable.collect()
    return {"seconds": time.perf_counter() - t0, "cpu_s": _cpu() - c0, "people": people,
            "files_opened": opened}


def _child(stage: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_compact", "--stage", stage,
                          *args], cwd=HERE.parent, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"stage {stage} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(r: dict, args: argparse.Namespace) -> str:
    ing, cmp_, before, after = r["ingest"], r["compact"], r["credit_before"], r["credit_after"]
    parts_per_partition = cmp_["parts_before"] / max(cmp_["partitions"], 1)
    read_ms_per_file = ((before["cpu_s"] - after["cpu_s"]) * 1000
                        / max(before["files_opened"] - after["files_opened"], 1))
    compact_ms_per_part = cmp_["cpu_s"] * 1000 / max(cmp_["parts_before"], 1)
    # National month: 150 GB; commits of the scaled size at 128 buckets (ingest.commit_limits)
    from parsers.ingest import commit_limits
    old_commit_gb = 256 / 1024
    new_commit_gb = commit_limits(BUCKETS)[0] / 2**30
    from parsers.lake import MONTH_TABLES
    from parsers.lake_schema import PERSON_TABLES
    partitions = len(PERSON_TABLES) * BUCKETS + len(MONTH_TABLES)  # of one month
    old_parts = NATIONAL_MONTH_GB / old_commit_gb * partitions
    new_parts = NATIONAL_MONTH_GB / new_commit_gb * partitions
    write_ms = r["write_ms_per_part"]
    lines = [
        "# Small files: commit parts, compaction, crediting reads (`benchmarks/bench_compact.py`)",
        "",
        f"Run {r['started']} ({r['minutes']:.1f} min), load average before {r['load'][0]:.1f}. "
        f"Input: months 1-{args.months} of the generated 1 GiB year ({ing['files']} files, "
        f"{ing['mb']:.0f} MiB), ingested with {BUCKETS} buckets in commits of "
        f"{args.commit_mb} MiB ({ing['commits']} commits, ≈ {ing['commits'] / args.months:.0f} "
        "per month) and no compaction: the shape of a national month, whose commits are "
        "many per month. Each stage in its own process.",
        "",
        "| stage | seconds | CPU s | what |",
        "|---|---:|---:|---|",
        f"| ingest, {args.commit_mb} MiB commits | {ing['seconds']:.1f} | {ing['cpu_s']:.1f} | "
        f"{ing['parts']:,} parts written ({parts_per_partition:.1f} per partition on average) |",
        f"| compact | {cmp_['seconds']:.1f} | {cmp_['cpu_s']:.1f} | {cmp_['parts_before']:,} "
        f"parts of {cmp_['partitions']:,} partitions merged → {cmp_['parts_after']:,} parts |",
        f"| credit one shard (1/{SHARD_OF} of the buckets), before compaction | "
        f"{before['seconds']:.1f} | {before['cpu_s']:.1f} | {before['people']:,} people, "
        f"{before['files_opened']:,} files opened |",
        f"| the same shard after compaction | {after['seconds']:.1f} | {after['cpu_s']:.1f} | "
        f"{after['people']:,} people, {after['files_opened']:,} files opened |",
        "",
        f"- Reading: **{read_ms_per_file:.2f} ms CPU per extra file** a shard opens "
        f"(before − after, over the extra files); shard CPU ×{before['cpu_s'] / after['cpu_s']:.2f} "
        "before compaction.",
        f"- Compaction: **{compact_ms_per_part:.2f} ms CPU per part merged**.",
        f"- Writing: **{write_ms:.2f} ms CPU per part** (the same 1 GiB ingested, its final "
        f"compaction included, with 16 and with {BUCKETS} buckets: CPU difference over the part "
        "difference, "
        "from `ingest_128.json` of this run).",
        "",
        "## A national month (150 GB, 128 buckets), from these per-part costs",
        "",
        f"- Before (256 MiB commits, no compaction): {old_parts:,.0f} parts written "
        f"(≈ {NATIONAL_MONTH_GB / old_commit_gb:.0f} commits × {partitions} partitions) → "
        f"{old_parts * write_ms / 60000:.0f} CPU-min of part writes; every crediting shard then "
        f"opens {NATIONAL_MONTH_GB / old_commit_gb:.0f} parts per partition per month.",
        f"- Now (commits scaled to {new_commit_gb:.0f} GiB at {BUCKETS} buckets, "
        f"`ingest.commit_limits`; then compaction): {new_parts:,.0f} parts written → "
        f"{new_parts * write_ms / 60000:.0f} CPU-min, plus compaction "
        f"{new_parts * compact_ms_per_part / 60000:.0f} CPU-min; shards open one part per "
        "partition.",
        f"- A national year's campaign reads 12 months × {partitions} partitions: before, "
        f"{12 * old_parts:,.0f} files ≈ {12 * old_parts * read_ms_per_file / 60000:.0f} CPU-min "
        f"of per-file overhead on top of the crediting; now {12 * partitions:,} files.",
        "",
        "Assumptions: costs per part and per file are constant (they are per file, not per byte: "
        "docs/ingestion.md); a national month's files all declare that month; the tables' row "
        "volume is unchanged by compaction (it only moves rows between files).",
        "",
    ]
    return "\n".join(lines)


def write_cost(dsn: Path) -> float:
    """ms CPU per part written: the same input ingested with 16 and with BUCKETS buckets."""
    res = {}
    for n in (16, BUCKETS):
        root = WORK / f"ingest_{n}"
        shutil.rmtree(root, ignore_errors=True)
        res[n] = _child("ingest_n", str(dsn), str(root), str(n))
        shutil.rmtree(root, ignore_errors=True)
    (RESULTS / "ingest_128.json").write_text(json.dumps(res, indent=1) + "\n")
    return ((res[BUCKETS]["cpu_s"] - res[16]["cpu_s"]) * 1000
            / max(res[BUCKETS]["parts"] - res[16]["parts"], 1))


def stage_ingest_n(dsn: Path, root: Path, n: int) -> dict:
    from benchmarks.bench_ingest import _files
    from parsers.ingest import ingest_paths

    c0, t0 = _cpu(), time.perf_counter()
    ingest_paths(_files(dsn), root, n_buckets=n, workers=1)
    return {"seconds": time.perf_counter() - t0, "cpu_s": _cpu() - c0,
            "parts": _count_parts(root / "lake")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--months", type=int, default=6)
    ap.add_argument("--commit-mb", type=int, default=16)
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite compact.md from compact.json (no measurement)")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stage:
        a = args.rest
        fn = {"ingest": lambda: stage_ingest(Path(a[0]), Path(a[1]), int(a[2]), int(a[3])),
              "ingest_n": lambda: stage_ingest_n(Path(a[0]), Path(a[1]), int(a[2])),
              "compact": lambda: stage_compact(Path(a[0])),
              "credit": lambda: stage_credit(Path(a[0]))}[args.stage]
        print(json.dumps(fn()))
        return 0
    if args.report_only:
        md = report(json.loads((RESULTS / "compact.json").read_text()), args)
        (RESULTS / "compact.md").write_text(md)
        print(md)
        return 0
    from benchmarks.bench_ingest import generate

    started, t0, load = time.strftime("%Y-%m-%dT%H:%M:%S"), time.perf_counter(), os.getloadavg()
    dsn = generate(args.mb, args.seed)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    root, copy = WORK / "lake_small_commits", WORK / "lake_uncompacted"
    r: dict = {"started": started, "load": load}
    r["ingest"] = _child("ingest", str(dsn), str(root), str(args.months), str(args.commit_mb))
    shutil.copytree(root, copy)
    r["compact"] = _child("compact", str(root))
    r["credit_before"] = _child("credit", str(copy))
    r["credit_after"] = _child("credit", str(root))
    r["write_ms_per_part"] = write_cost(dsn)
    r["minutes"] = (time.perf_counter() - t0) / 60
    shutil.rmtree(WORK, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "compact.json").write_text(json.dumps(r, indent=1, default=str) + "\n")
    md = report(r, args)
    (RESULTS / "compact.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
