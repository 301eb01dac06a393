"""Cost of the lake's current declarations for crediting (not a test).

Crediting needs the lake's current declarations (A&R, fractions) and identity links. That cost
follows the number of DECLARATIONS, not of people: a national year holds some 24 million (one
per establishment and month), while the generated bench lakes hold about one per 100 people.
Two costs, each measured at growing declaration counts in fresh processes (peak RSS = that
process's ru_maxrss):
- ``compute``: ``current_declarations_path`` from scratch — once per lake state, kept on disk,
  one declared month at a time;
- ``hold``: ``run_declarations(root)`` with that folder present — what a process holds when its
  run needs EVERY declaration (a bucket run holds only those its rows refer to), plus the
  per-row cost of finding a row's declaration rank.
Baseline (same run): Polars reading the same ``decl_id`` column and sorting it as strings.

Input: the declarations table of a generated lake (``--root``, default ./bench_data/lake1000k,
the lake of ``benchmarks.bench_credit --people 1000000``, generated when absent), replicated
×k with distinct SIRETs and decl_ids in the parsers' format (sha256 prefix + "-" + line),
written once under
./bench_data/declarations_x<k>/ (git-ignored); the person tables are linked, not copied.
Figures go to benchmarks/results/declarations.md.

    python -m benchmarks.bench_declarations [--root DIR] [--factors 1,10,50]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from benchmarks.bench_credit import bench_lake
from flows.runners import declarations_share

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BENCH_DATA = HERE.parent / "bench_data"
NATIONAL_DECLARATIONS_PER_YEAR = 24_000_000  # ~2 M establishments filing monthly
NATIONAL_PEOPLE_PER_DECLARATION = 10  # ~20 M salaried people / ~2 M establishments
NATIONAL_BUCKETS = 128  # README sizing for the national lake


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def replicate(src_root: Path, k: int) -> Path:
    """A lake whose declarations are ``src_root``'s ×k (distinct SIRETs and decl_ids, same
    format), its person tables symlinked (identity links read individuals)."""
    dst = BENCH_DATA / f"declarations_x{k}"
    lake = dst / "lake"
    if (lake / "declarations").exists():
        return dst
    d = pl.scan_parquet(src_root / "lake" / "declarations" / "**" / "*.parquet",
                        hive_partitioning=False).collect()
    copies = []
    for i in range(k):
        salt = pl.struct(pl.col("decl_id"), pl.lit(i)).hash().cast(pl.String).str.slice(0, 15)
        copies.append(d.with_columns(
            (salt.str.zfill(16) + "-" + pl.col("decl_id").str.split("-").list.last())
            .alias("decl_id"),
            (pl.col("siret").str.slice(0, 9) + pl.lit(f"{i:05d}")).alias("siret"),
            (pl.col("self_id") + pl.lit(f"~{i}")).alias("self_id")))
    big = pl.concat(copies)
    for (month,), part in big.group_by("decl_month"):
        out = lake / "declarations" / f"month={month:%Y-%m}"
        out.mkdir(parents=True, exist_ok=True)
        part.write_parquet(out / "part-bench.parquet")
    for table in (src_root / "lake").iterdir():
        if table.name != "declarations" and not (lake / table.name).exists():
            (lake / table.name).symlink_to(table.resolve())
    return dst


LOOKUP_ROWS = 1_000_000
ROWS_PER_DECLARATION = 10  # ~ rows of one declaration in one bucket's part file


def stage_compute(root: Path) -> dict:
    """The lake state's current declarations computed from scratch (once per lake state)."""
    from parsers.lake import lake_path
    from pipeline.worked_time import CURRENT_DIR, current_declarations_path
    shutil.rmtree(lake_path(root) / CURRENT_DIR, ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    path = current_declarations_path(root)
    n = pl.scan_parquet(path).select(pl.len()).collect().item()
    return {"declarations": n, "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0, "peak_rss_mb": _rss_mb()}


def stage_hold(root: Path) -> dict:
    """``run_declarations`` over every bucket (the folder already computed), then the per-row
    cost of mapping person-table rows to their declaration rank (what every table read of
    every bucket does) on ``LOOKUP_ROWS`` decl_ids drawn from the current declarations."""
    from pipeline.worked_time import current_declarations_path, run_declarations
    current_declarations_path(root)
    base = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    run = run_declarations(root)
    out = {"declarations": run.decls.height, "seconds": time.perf_counter() - t0,
           "cpu_seconds": time.process_time() - c0, "peak_rss_mb": _rss_mb(),
           "before_mb": base}
    # rows come grouped by declaration (a declaration's people are written together), the
    # declarations in no particular order: ROWS_PER_DECLARATION consecutive rows each
    rows = (run.decls.select(pl.col("decl_id").sample(LOOKUP_ROWS // ROWS_PER_DECLARATION,
                                                      with_replacement=True, seed=1))
            .select(pl.col("decl_id").repeat_by(ROWS_PER_DECLARATION)).explode("decl_id"))
    t0 = time.perf_counter()
    rows.lazy().with_columns(run.drank).collect()
    out["lookup_ns_per_row"] = (time.perf_counter() - t0) / LOOKUP_ROWS * 1e9
    return out


def stage_subset(root: Path) -> dict:
    """What EVERY bucket run pays on a large lake: ``run_declarations`` for one bucket once
    the process already holds the identity links (a worker's second bucket) — it reads the
    lake state's whole current-declarations folder to keep the declarations its rows refer
    to. (The replicated declarations are not referred to by the symlinked person tables: the
    subset kept is small, the read is the whole folder, as nationally.)"""
    from pipeline.worked_time import current_declarations_path, run_declarations
    path = current_declarations_path(root)
    run_declarations(root, [0])
    t0, c0 = time.perf_counter(), time.process_time()
    run = run_declarations(root, [1])
    out = {"kept": run.decls.height, "seconds": time.perf_counter() - t0,
           "cpu_seconds": time.process_time() - c0}
    return {"declarations": pl.scan_parquet(path).select(pl.len()).collect().item(), **out}


def stage_baseline(root: Path) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    ids = (pl.scan_parquet(root / "lake" / "declarations" / "**" / "*.parquet",
                           hive_partitioning=False).select("decl_id").sort("decl_id").collect())
    return {"declarations": ids.height, "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0, "peak_rss_mb": _rss_mb()}


def _child_json(args: list[str]) -> dict:
    out = subprocess.check_output([sys.executable, "-m", "benchmarks.bench_declarations",
                                   *args], cwd=HERE.parent)
    return json.loads(out.decode().strip().splitlines()[-1])


def _child(stage: str, root: Path) -> dict:
    return _child_json(["--stage", stage, "--root", str(root)])


def slope(rows: list[dict], key: str) -> tuple[float, float]:
    """``bench_scale.linear`` of ``key`` against millions of declarations: (slope, intercept)."""
    from benchmarks.bench_scale import linear
    if len(rows) < 2:
        return 0.0, rows[0][key] if rows else 0.0
    return linear([r["declarations"] / 1e6 for r in rows], [r[key] for r in rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=None,
                    help="lake root (default: bench_credit's 1 M-person lake, generated if absent)")
    ap.add_argument("--factors", default="1,10,50")
    ap.add_argument("--stage", choices=["compute", "hold", "subset", "baseline", "replicate"],
                    help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.stage == "replicate":
        print(json.dumps({"root": str(replicate(a.root, int(a.factors)))}))
        return 0
    if a.stage:
        fn = {"compute": stage_compute, "hold": stage_hold, "subset": stage_subset,
              "baseline": stage_baseline}[a.stage]
        print(json.dumps(fn(a.root)))
        return 0
    a.root = a.root or bench_lake(1_000_000, 2025)
    if not (a.root / "lake" / "declarations").exists():
        print(f"no lake under {a.root}", file=sys.stderr)
        return 2
    rows = []
    for k in (int(x) for x in a.factors.split(",")):
        if k == 1:
            root = a.root
        else:  # in a child: a fork inherits the parent's peak RSS (ru_maxrss) across exec
            root = Path(_child_json(["--stage", "replicate", "--root", str(a.root),
                                     "--factors", str(k)])["root"])
        load = "/".join(f"{x:.1f}" for x in os.getloadavg())
        comp, res, base = _child("compute", root), _child("hold", root), _child("baseline", root)
        sub = _child("subset", root)
        rows.append({"factor": k, "load": load, **res,
                     "compute_seconds": comp["seconds"], "compute_cpu_seconds": comp["cpu_seconds"],
                     "compute_rss_mb": comp["peak_rss_mb"],
                     "baseline_seconds": base["seconds"],
                     "baseline_cpu_seconds": base["cpu_seconds"],
                     "baseline_rss_mb": base["peak_rss_mb"],
                     "subset_seconds": sub["seconds"], "subset_cpu_seconds": sub["cpu_seconds"]})
        print(rows[-1], flush=True)
    lines = render(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "declarations.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (RESULTS / "declarations.json").write_text(json.dumps(rows, indent=1) + "\n",
                                               encoding="utf-8")
    print("\n".join(lines))
    return 0


def render(rows: list[dict]) -> list[str]:
    lines = ["# Cost of the lake's current declarations for crediting",
             "", "`python -m benchmarks.bench_declarations` — fresh processes per cell. "
             "*compute*: the lake state's current declarations (A&R, fractions, ranks) from "
             "scratch, one declared month at a time, kept on disk (once per lake state). "
             "*hold*: `run_declarations` over every bucket (decl_id Enum + identity links over "
             "the whole lake's individuals) — what a process holds when its run needs every "
             "declaration; a bucket run holds only those its rows refer to.",
             "Baseline (same run): Polars scan of the same `decl_id` column sorted as strings.",
             "Lookup: ns per person-table row to find its declaration rank (1 M rows, in runs "
             f"of {ROWS_PER_DECLARATION} rows of one declaration).",
             "", "| declarations | compute s | compute CPU s | compute peak RSS MB | hold s | "
             "hold peak RSS MB | bucket subset s | bucket subset CPU s | lookup ns/row | "
             "baseline s | baseline RSS MB | load 1/5/15 |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['declarations']:,} | {r['compute_seconds']:.2f} | "
                     f"{r['compute_cpu_seconds']:.2f} | {r['compute_rss_mb']:,.0f} | "
                     f"{r['seconds']:.2f} | {r['peak_rss_mb']:,.0f} | "
                     f"{r.get('subset_seconds', float('nan')):.2f} | "
                     f"{r.get('subset_cpu_seconds', float('nan')):.2f} | "
                     f"{r['lookup_ns_per_row']:.0f} | {r['baseline_seconds']:.2f} | "
                     f"{r['baseline_rss_mb']:,.0f} | {r['load']} |")
    nat = NATIONAL_DECLARATIONS_PER_YEAR / 1e6
    c_t, ci_t = slope(rows, "compute_seconds")
    c_m, ci_m = slope(rows, "compute_rss_mb")
    h_m, hi_m = slope(rows, "peak_rss_mb")
    s_c, si_c = (slope(rows, "subset_cpu_seconds") if all("subset_cpu_seconds" in r for r in rows)
                 else (float("nan"), float("nan")))
    per_bucket = s_c * nat + si_c
    share = declarations_share(NATIONAL_PEOPLE_PER_DECLARATION, NATIONAL_BUCKETS)
    lines += ["", f"Fitted per million declarations: compute {c_t:.2f} s and {c_m:,.0f} MB "
              f"(+{ci_t:.2f} s, +{ci_m:,.0f} MB); hold {h_m:,.0f} MB (+{hi_m:,.0f} MB).",
              "",
              f"National year ({nat:.0f} M declarations): **computed once per lake state in "
              f"≈ {c_t * nat + ci_t:.0f} s, peak ≈ {(c_m * nat + ci_m) / 1024:.1f} GB** (one "
              "month at a time, so this peak follows a month's declarations as much as the "
              "year's; the fit is linear in the year's, an upper bound). **A bucket run holds "
              f"only the declarations its rows refer to**: with ~{NATIONAL_PEOPLE_PER_DECLARATION}"
              f" people per declaration and {NATIONAL_BUCKETS} buckets a declaration reaches "
              f"a given bucket with odds 1 − (1 − 1/{NATIONAL_BUCKETS})^"
              f"{NATIONAL_PEOPLE_PER_DECLARATION} = {share:.1%}, i.e. ≈ {share * nat:.1f} M "
              f"declarations ≈ **{(h_m * share * nat + hi_m) / 1024:.2f} GB per process** "
              f"(against ≈ {(h_m * nat + hi_m) / 1024:.1f} GB if it held all of them). The bench "
              "lakes (100 people per declaration, 16 buckets) reach every bucket with every "
              "declaration: there a bucket run still holds them all.",
              "",
              "**What every bucket run pays to find them** (*bucket subset*: a worker's second "
              "bucket, identity links already held): a read of the lake state's whole "
              f"current-declarations folder, fitted {s_c:.3f} CPU-s per million declarations "
              f"(+{si_c:.2f}) → ≈ {per_bucket:.1f} CPU-s per bucket at {nat:.0f} M, "
              f"**≈ {per_bucket * NATIONAL_BUCKETS / 60:.1f} CPU-minutes per national campaign** "
              f"({NATIONAL_BUCKETS} buckets), which the per-person crediting extrapolation "
              "(bench lakes: 1 declaration per 100 people) does not include.",
              "",
              f"Row lookups: {rows[0]['lookup_ns_per_row']:.0f} ns per row at "
              f"{rows[0]['declarations']:,} declarations, {rows[-1]['lookup_ns_per_row']:.0f} ns "
              f"at {rows[-1]['declarations']:,}. A national campaign reads about 23 "
              "person-table rows per person (37 M people: ~850 M lookups), i.e. "
              f"~{850e6 * rows[-1]['lookup_ns_per_row'] / 1e9 / 60:.1f} CPU-minutes at the "
              "largest size measured, spread over the buckets."]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
