"""Crediting throughput: persons credited per second and peak RSS (not a test).

Two stages, each in its own process (peak RSS is per process):
- ``amount``: category + exact prorated amount + ceiling on N in-memory person rows
  (``pipeline.credits.annual_amounts`` + ``pipeline.ceiling.apply_ceiling``); target >= 1 M/s;
- ``e2e``: ``compute_year`` from the lake (worked time, absences, categories, amounts) +
  ``apply_ceiling``; target >= 200 000 persons/s.

The lake comes from ``python -m generator.lake`` (generated once under ``--root`` if absent).
Figures go to ``benchmarks/results/credit.md``.

    python -m benchmarks.bench_credit [--root DIR] [--people N] [--year 2025]
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


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    t0 = time.perf_counter()
    out = apply_ceiling(annual_amounts(persons.lazy(), flags.lazy(), p), balances.lazy()).collect()
    dt = time.perf_counter() - t0
    assert out.height == people and out["credit_cents"].min() >= 0
    return {"stage": "amount+ceiling", "persons": people, "seconds": dt,
            "persons_per_s": people / dt, "peak_rss_mb": _rss_mb()}


def stage_e2e(root: Path, year: int) -> dict:
    from pipeline.ceiling import apply_ceiling
    from pipeline.credits import compute_year
    t0 = time.perf_counter()
    res = compute_year(root, year)
    empty = pl.LazyFrame(schema={"nir": pl.String, "earned_balance_cents": pl.Int64})
    out = apply_ceiling(res.amounts, empty).collect()
    unc = res.uncreditable.collect()
    dt = time.perf_counter() - t0
    return {"stage": "end-to-end from lake", "persons": out.height, "uncreditable": unc.height,
            "seconds": dt, "persons_per_s": out.height / dt, "peak_rss_mb": _rss_mb(),
            "credited_total_eur": int(out["credit_cents"].sum()) / 100}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path(os.environ.get(
        "CPF_BENCH_LAKE", "/tmp/cpf_bench_lake")))
    ap.add_argument("--people", type=int, default=int(os.environ.get("CPF_BENCH_PEOPLE",
                                                                     1_000_000)))
    ap.add_argument("--year", type=int, default=2025)
    ap.add_argument("--stage", choices=["amount", "e2e"], default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.stage == "amount":
        print(json.dumps(stage_amount(a.people, a.year)))
        return 0
    if a.stage == "e2e":
        print(json.dumps(stage_e2e(a.root, a.year)))
        return 0
    if not (a.root / "lake" / "files").exists():
        print(f"generating a lake of {a.people} people under {a.root}", flush=True)
        subprocess.check_call([sys.executable, "-m", "generator.lake", "--root", str(a.root),
                               "--people", str(a.people), "--year", str(a.year)])
    rows = []
    for stage in ("amount", "e2e"):
        out = subprocess.check_output([sys.executable, "-m", "benchmarks.bench_credit",
                                       "--stage", stage, "--root", str(a.root),
                                       "--people", str(a.people), "--year", str(a.year)],
                                      cwd=HERE.parent)
        rows.append(json.loads(out.decode().strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    targets = {"amount+ceiling": 1_000_000, "end-to-end from lake": 200_000}
    lines = ["# Crediting benchmark (benchmarks/bench_credit.py)", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
             f"Python {platform.python_version()}, Polars {pl.__version__}. Lake: `{a.root}` "
             f"({a.people:,} generated people, year {a.year}).", "",
             "| stage | persons | seconds | persons/s | target | peak RSS (MB) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        tgt = targets[r["stage"]]
        ok = "met" if r["persons_per_s"] >= tgt else "NOT met"
        lines.append(f"| {r['stage']} | {r['persons']:,} | {r['seconds']:.2f} | "
                     f"{r['persons_per_s']:,.0f} | {tgt:,} ({ok}) | {r['peak_rss_mb']:,.0f} |")
    lines += ["", "Each stage runs in its own process (peak RSS = that process's ru_maxrss).",
              "amount+ceiling: in-memory exact ratios (Int128) → category, ⌈amount × ratio⌉, "
              "ceiling.", "end-to-end: `compute_year` from the Parquet lake (current versions, "
              "pay-period attribution, absences, presence fallback, exact ratio, categories) + "
              "`apply_ceiling`."]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "credit.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
