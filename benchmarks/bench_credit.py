"""Crediting throughput: persons credited per second and peak RSS (not a test).

Stages, each in its own process (peak RSS = that process's ru_maxrss):
- ``amount``: category + exact prorated amount + ceiling on N in-memory person rows
  (``pipeline.credits.annual_amounts`` + ``pipeline.ceiling.apply_ceiling``); target >= 1 M/s;
- ``e2e``: ``compute_year`` from the lake (worked time, absences, categories, amounts) +
  ``apply_ceiling``, over the whole year (``buckets=None``) and over ONE bucket (what the
  scale-out runs per worker: peak RSS must follow the bucket, not the year); target
  >= 200 000 persons/s. Per-stage wall times come from ``pipeline.worked_time.STAGE_SECONDS``.

The lake comes from ``python -m generator.lake`` (16 buckets), generated once and cached under
``./bench_data/lake<N>`` (git-ignored) unless ``--root`` is given. The default (100 000 people)
runs in about a minute; ``--people 1000000`` generates ~1.3 GB once (~7 min), then ~2 min.
Figures, with ``os.getloadavg()`` (the machine is shared), go to ``benchmarks/results/credit.md``.

    python -m benchmarks.bench_credit [--root DIR] [--people N] [--year 2025] [--bucket 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BENCH_DATA = HERE.parent / "bench_data"
N_BUCKETS = 16


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def stage_amount(people: int, year: int) -> dict:
    from pipeline.ceiling import apply_ceiling
    from pipeline.credits import annual_amounts
    from pipeline.parameters import params_for_year
    p = params_for_year(year)
    idx = pl.int_range(0, people, eager=True)
    nir = (pl.lit("1") + (idx + 10**11).cast(pl.String)).alias("nir")
    persons = pl.DataFrame({"i": idx}).select(
        nir, ((pl.col("i") * 7919) % 15167 * 12).cast(pl.Int128).alias("ratio12_num"),
        pl.lit(15167, pl.Int128).alias("ratio12_den"))
    flags = persons.select("nir", (pl.col("nir").str.slice(-2).cast(pl.Int64) == 7).alias("boeth"),
                           pl.lit(False).alias("esat"),
                           (pl.col("nir").str.slice(-2).cast(pl.Int64) == 3).alias("low_qualified"))
    balances = persons.select("nir", ((pl.col("ratio12_num") * 37) % 600000).cast(pl.Int64)
                              .alias("earned_balance_cents"))
    load = _load()
    t0 = time.perf_counter()
    out = apply_ceiling(annual_amounts(persons.lazy(), flags.lazy(), p), balances.lazy()).collect()
    dt = time.perf_counter() - t0
    assert out.height == people and out["credit_cents"].min() >= 0
    return {"stage": "amount+ceiling", "mode": "in memory", "persons": people, "seconds": dt,
            "persons_per_s": people / dt, "peak_rss_mb": _rss_mb(), "load": load,
            "load_after": _load()}


def stage_e2e(root: Path, year: int, buckets: list[int] | None) -> dict:
    from pipeline.ceiling import apply_ceiling
    from pipeline.credits import compute_year
    from pipeline.worked_time import STAGE_SECONDS
    load = _load()
    t0, c0 = time.perf_counter(), time.process_time()
    res = compute_year(root, year, buckets=buckets)
    empty = pl.LazyFrame(schema={"nir": pl.String, "earned_balance_cents": pl.Int64})
    out = apply_ceiling(res.amounts, empty).collect()
    unc = res.uncreditable.collect()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    stages = dict(STAGE_SECONDS)
    stages["amounts_ceiling_uncreditable"] = dt - sum(stages.values())
    mode = "whole year" if buckets is None else f"bucket {','.join(map(str, buckets))}"
    return {"stage": "end-to-end from lake", "mode": mode, "persons": out.height,
            "uncreditable": unc.height, "seconds": dt, "persons_per_s": out.height / dt,
            "cpu_seconds": cpu, "peak_rss_mb": _rss_mb(), "load": load, "load_after": _load(),
            "stage_seconds": stages,
            "credited_total_eur": int(out["credit_cents"].sum()) / 100}


def stage_buckets(root: Path, year: int, buckets: list[int]) -> dict:
    """Several buckets one after the other in ONE process (what a scale-out worker does):
    the per-process caches (current declarations, NTT links) are shared between them."""
    from pipeline.ceiling import apply_ceiling
    from pipeline.credits import compute_year
    load = _load()
    t0, c0 = time.perf_counter(), time.process_time()
    persons, total = 0, 0
    empty = pl.LazyFrame(schema={"nir": pl.String, "earned_balance_cents": pl.Int64})
    for b in buckets:
        res = compute_year(root, year, buckets=[b])
        out = apply_ceiling(res.amounts, empty).collect()
        res.uncreditable.collect()
        persons += out.height
        total += int(out["credit_cents"].sum())
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"persons": persons, "seconds": dt, "cpu_seconds": cpu, "peak_rss_mb": _rss_mb(),
            "load": load, "credited_total_cents": total}


def run_workers(root: Path, year: int, workers: int) -> dict:
    """All buckets, split over ``workers`` concurrent processes (round robin), each with the
    Polars thread count the crediting flow gives its workers (``worker_env``); wall time of
    the slowest, peak RSS of the largest worker."""
    from flows.runners import worker_env
    args = [sys.executable, "-m", "benchmarks.bench_credit", "--root", str(root),
            "--year", str(year), "--stage", "buckets"]
    env = {**os.environ, **worker_env(workers)}
    load = _load()
    t0 = time.perf_counter()
    procs = [subprocess.Popen(args + ["--buckets", json.dumps(list(range(w, N_BUCKETS,
                                                                          workers)))],
                              cwd=HERE.parent, stdout=subprocess.PIPE, env=env)
             for w in range(workers)]
    outs = [json.loads(p.communicate()[0].decode().strip().splitlines()[-1]) for p in procs]
    dt = time.perf_counter() - t0
    persons = sum(o["persons"] for o in outs)
    return {"stage": "end-to-end from lake", "persons": persons, "seconds": dt,
            "mode": f"{N_BUCKETS} buckets, {workers} concurrent worker(s)",
            "polars_threads": int(env["POLARS_MAX_THREADS"]),
            "persons_per_s": persons / dt, "cpu_seconds": sum(o["cpu_seconds"] for o in outs),
            "peak_rss_mb": max(o["peak_rss_mb"] for o in outs), "load": load,
            "load_after": _load(),
            "credited_total_eur": sum(o["credited_total_cents"] for o in outs) / 100}


def _run(args: list[str]) -> dict:
    out = subprocess.check_output([sys.executable, "-m", "benchmarks.bench_credit", *args],
                                  cwd=HERE.parent)
    return json.loads(out.decode().strip().splitlines()[-1])


def bench_lake(people: int, year: int, root: Path | None = None) -> Path:
    """The bench lake of ``people`` people (default ./bench_data/lake<people/1000>k), generated
    unless it is there (seed 1: every benchmark reading it sees the same lake)."""
    root = root or BENCH_DATA / f"lake{people // 1000}k"
    if not (root / "lake" / "files").exists():
        print(f"generating a lake of {people} people under {root}", flush=True)
        subprocess.check_call([sys.executable, "-m", "generator.lake", "--root", str(root),
                               "--people", str(people), "--year", str(year), "--seed", "1",
                               "--buckets", str(N_BUCKETS)], cwd=HERE.parent)
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=None,
                    help="lake root (default ./bench_data/lake<people>, generated if absent)")
    ap.add_argument("--people", type=int, default=int(os.environ.get("CPF_BENCH_PEOPLE",
                                                                     100_000)))
    ap.add_argument("--year", type=int, default=2025)
    ap.add_argument("--bucket", type=int, default=0, help="bucket of the per-bucket run")
    ap.add_argument("--stage", choices=["amount", "e2e", "buckets"], default=None,
                    help=argparse.SUPPRESS)
    ap.add_argument("--buckets", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=RESULTS / "credit.md")
    a = ap.parse_args(argv)
    if a.stage == "amount":
        print(json.dumps(stage_amount(a.people, a.year)))
        return 0
    root = bench_lake(a.people, a.year, a.root)  # the stages' children get it as --root
    if a.stage == "buckets":
        print(json.dumps(stage_buckets(root, a.year, json.loads(a.buckets))))
        return 0
    if a.stage == "e2e":
        buckets = json.loads(a.buckets) if a.buckets else None
        print(json.dumps(stage_e2e(root, a.year, buckets)))
        return 0
    common = ["--root", str(root), "--people", str(a.people), "--year", str(a.year)]
    rows = [_run(["--stage", "amount", *common])]
    print(rows[-1], flush=True)
    rows.append(_run(["--stage", "e2e", *common]))
    print(rows[-1], flush=True)
    rows.append(_run(["--stage", "e2e", *common, "--buckets", json.dumps([a.bucket])]))
    print(rows[-1], flush=True)
    for workers in (1, 2):
        rows.append(run_workers(root, a.year, workers))
        print(rows[-1], flush=True)
    lines = render(rows, root, a.people, a.year)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_section(a.out, lines)
    (a.out.with_name(f"credit_{a.people // 1000}k.json")).write_text(
        json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


def write_section(path: Path, lines: list[str]) -> None:
    """Replace this lake size's section (from its "## " title to the next one) in the results
    file, keeping the hand-written before/after text and the other sizes' sections."""
    old = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    title = lines[0].split(" (")[0]
    start = next((i for i, x in enumerate(old) if x.startswith(title)), None)
    if start is None:
        new = old + ([""] if old else []) + lines
    else:
        end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")),
                   len(old))
        new = old[:start] + lines + ([""] if end < len(old) else []) + old[end:]
    path.write_text("\n".join(new) + "\n", encoding="utf-8")


def render(rows: list[dict], root: Path, people: int, year: int) -> list[str]:
    targets = {"amount+ceiling": 1_000_000, "end-to-end from lake": 200_000}
    lines = [f"## {people:,} people, year {year} (`{root}`)", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
             f"(shared), Python {platform.python_version()}, Polars {pl.__version__}.", "",
             "| stage | mode | persons | seconds | persons/s | target | CPU s | peak RSS (MB) | "
             "load avg 1/5/15 min (start) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        tgt = targets[r["stage"]]
        ok = "met" if r["persons_per_s"] >= tgt else "NOT met"
        mode = r["mode"] + (f", {r['polars_threads']} Polars thread(s) each"
                            if "polars_threads" in r else "")
        lines.append(f"| {r['stage']} | {mode} | {r['persons']:,} | {r['seconds']:.2f} | "
                     f"{r['persons_per_s']:,.0f} | {tgt:,} ({ok}) | "
                     f"{r.get('cpu_seconds', float('nan')):.2f} | {r['peak_rss_mb']:,.0f} | "
                     f"{r['load']} |")
    e2e = [r for r in rows if "stage_seconds" in r]
    if e2e:
        names = list(e2e[0]["stage_seconds"])
        lines += ["", "Per stage (seconds; persons/s = persons of the run / stage seconds):", "",
                  "| stage | " + " | ".join(r["mode"] for r in e2e) + " |",
                  "|---|" + "---:|" * len(e2e)]
        for n in names:
            cells = []
            for r in e2e:
                sec = r["stage_seconds"].get(n, 0.0)
                pps = r["persons"] / sec if sec > 0 else float("inf")
                cells.append(f"{sec:.2f} s ({pps:,.0f}/s)")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
