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
    """A lake whose declarations are ``src_root``'s ×k (the originals, which the person tables
    refer to, and k − 1 copies with distinct SIRETs and decl_ids, same format), its person
    tables symlinked (identity links read individuals)."""
    dst = BENCH_DATA / f"declarations_x{k}"
    lake = dst / "lake"
    marker = dst / f"replica-of-{src_root.resolve().name}.v2"  # v2: the originals are kept
    if marker.exists():
        return dst
    shutil.rmtree(dst, ignore_errors=True)  # absent, or built by an earlier version
    d = pl.scan_parquet(src_root / "lake" / "declarations" / "**" / "*.parquet",
                        hive_partitioning=False).collect()
    copies = [d]  # the original ones stay: the person tables refer to them
    for i in range(1, k):
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
    for table in (src_root / "lake").iterdir():  # tables only: derived folders ("_...") are
        # per lake state, and a shared one would be recomputed by each lake in turn
        if (table.name != "declarations" and not table.name.startswith("_")
                and not (lake / table.name).exists()):
            (lake / table.name).symlink_to(table.resolve())
    marker.touch()
    return dst


LOOKUP_ROWS = 1_000_000
ROWS_PER_DECLARATION = 10  # ~ rows of one declaration in one bucket's part file


def stage_compute(root: Path) -> dict:
    """The lake state's current declarations computed from scratch (once per lake state),
    with each bucket's share (``bucket_shares``, timed apart: it reads the contracts, so its
    cost follows the lake's contract rows, not its declarations)."""
    import pipeline.declaration_ranks as dr
    from parsers.lake import lake_path
    shutil.rmtree(lake_path(root) / dr.CURRENT_DIR, ignore_errors=True)
    shares_cpu = [0.0]
    plain = dr.bucket_shares

    def timed(*args):  # consumed here, so the writes of the shares stay outside the timing
        c = time.process_time()
        out = list(plain(*args))
        shares_cpu[0] += time.process_time() - c
        return out

    dr.bucket_shares = timed
    t0, c0 = time.perf_counter(), time.process_time()
    path = dr.current_declarations_path(root)
    out = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
           "peak_rss_mb": _rss_mb()}
    n = dr.scan_current(path).select(pl.len()).collect().item()
    return {"declarations": n, **out, "shares_cpu_seconds": shares_cpu[0]}


def stage_hold(root: Path) -> dict:
    """``run_declarations`` over every bucket (the folder already computed), then the per-row
    cost of mapping person-table rows to their declaration rank (what every table read of
    every bucket does) on ``LOOKUP_ROWS`` decl_ids drawn from the current declarations."""
    from pipeline.declaration_ranks import current_declarations_path, run_declarations
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
    the process already holds the identity links (a worker's second bucket) — it reads its
    bucket's share of the current declarations (``bucket_declarations``). The replicated
    declarations are not referred to by the symlinked person tables: the share stays the
    original lake's while the lake's declarations grow ×k, as a national bucket's share
    (~7.5 %) is small against the lake's 24 M."""
    from pipeline.declaration_ranks import current_declarations_path, run_declarations, scan_current
    path = current_declarations_path(root)
    run_declarations(root, [0])
    t0, c0 = time.perf_counter(), time.process_time()
    run = run_declarations(root, [1])
    out = {"kept": run.decls.height, "seconds": time.perf_counter() - t0,
           "cpu_seconds": time.process_time() - c0}
    return {"declarations": scan_current(path).select(pl.len()).collect().item(), **out}


def stage_baseline(root: Path) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    ids = (pl.scan_parquet(root / "lake" / "declarations" / "**" / "*.parquet",
                           hive_partitioning=False).select("decl_id").sort("decl_id").collect())
    return {"declarations": ids.height, "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0, "peak_rss_mb": _rss_mb()}


NATIONAL_MONTH_DECLARATIONS = NATIONAL_DECLARATIONS_PER_YEAR // 12
CONTRACT_ROWS_PER_PERSON = 1.15  # contract rows per person-month (the 1 M bench lake: 11.1 a year)


def national_month(seed: int = 1) -> Path:
    """A synthetic national MONTH for the bucket shares, written once under bench_data: its
    current declarations (2 M ids in the parsers' format) and a contracts partition of
    ``NATIONAL_BUCKETS`` bucket folders holding only ``decl_id`` and ``bucket`` (the typed scan
    inserts the other columns): ~10 people per declaration, each in a random bucket, 1.15
    contract rows per person."""
    import numpy as np
    root = BENCH_DATA / "national_month"
    month = root / "lake" / "contracts" / "month=2025-01"
    if (root / "current.parquet").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    n = NATIONAL_MONTH_DECLARATIONS
    prefix = pl.Series(rng.integers(0, 2**62, n, dtype=np.int64))
    ids = pl.DataFrame({"p": prefix, "l": rng.integers(1, 10**6, n)}).select(
        pl.format("{}-{}", pl.col("p").cast(pl.String).str.zfill(19).str.slice(3, 16),
                  pl.col("l")).alias("decl_id"))
    ids = ids.unique(maintain_order=True).with_row_index("_drank").with_columns(
        pl.col("_drank").cast(pl.Int64)).select("decl_id", "_drank")
    people = ids.height * NATIONAL_PEOPLE_PER_DECLARATION
    decl = np.arange(people) // NATIONAL_PEOPLE_PER_DECLARATION
    extra = rng.random(people) < CONTRACT_ROWS_PER_PERSON - 1  # a second contract
    bucket = rng.integers(0, NATIONAL_BUCKETS, people).astype(np.int32)
    rows = pl.DataFrame({"decl": np.concatenate([decl, decl[extra]]),
                         "bucket": np.concatenate([bucket, bucket[extra]])})
    rows = rows.sort("bucket", "decl").with_columns(
        pl.lit(ids["decl_id"]).gather(pl.col("decl")).alias("decl_id")).drop("decl")
    for (b,), g in rows.group_by("bucket"):
        out = month / f"bucket={b:03d}"
        out.mkdir(parents=True, exist_ok=True)
        g.select("decl_id", "bucket").write_parquet(out / "part-bench.parquet")
    ids.write_parquet(root / "current.parquet")
    return root


def stage_national(root: Path) -> dict:
    """On ``national_month``: the lake-state step (``bucket_shares`` over the month's
    contracts) and, per bucket, reading its share (``bucket_declarations``) against the former
    way, semi-joining the month's whole list with the bucket's contract decl_ids (baseline)."""
    import datetime as dt
    import pipeline.declaration_ranks as dr
    from parsers.lake import scan_parts
    from parsers.lake_schema import TABLES
    part = pl.read_parquet(root / "current.parquet")
    state = root / "state"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir()
    part.write_parquet(state / "part-0000.parquet")
    base = _rss_mb()
    c0 = time.process_time()
    shares = pairs = 0
    for bucket, share in dr.bucket_shares(root, dt.date(2025, 1, 1), part):
        dr.write_share(state, 0, bucket, share)
        shares, pairs = shares + 1, pairs + share.height
    out = {"month_declarations": part.height, "shares_cpu_seconds": time.process_time() - c0,
           "shares_peak_rss_mb": _rss_mb(), "before_mb": base, "buckets": shares,
           "pairs": pairs}
    out["contract_rows"] = (scan_parts(sorted(root.glob("lake/contracts/*/*/*.parquet")),
                                       TABLES["contracts"]).select(pl.len()).collect().item())
    return out


def stage_national_bucket(root: Path, way: str) -> dict:
    """One bucket run's cost to find its declarations for the month: ``share`` or
    ``baseline`` (the whole list, semi-joined with its contracts' decl_ids)."""
    import pipeline.declaration_ranks as dr
    from parsers.lake import scan_parts
    from parsers.lake_schema import TABLES
    from pipeline.lake_reads import bucket_parts
    state = root / "state"
    c0 = time.process_time()
    if way == "share":
        decls = dr.bucket_declarations(state, [0]).sort("_drank")
    else:
        ids = (scan_parts(bucket_parts(root, "contracts", [0]), TABLES["contracts"])
               .select("decl_id").unique())
        decls = dr.scan_current(state).join(ids, on="decl_id", how="semi").sort("_drank").collect()
    return {"way": way, "kept": decls.height, "cpu_seconds": time.process_time() - c0,
            "peak_rss_mb": _rss_mb()}


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
    ap.add_argument("--stage", choices=["compute", "hold", "subset", "baseline", "replicate",
                                        "national-data", "national", "national-share",
                                        "national-baseline"],
                    help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.stage == "replicate":
        print(json.dumps({"root": str(replicate(a.root, int(a.factors)))}))
        return 0
    if a.stage == "national-data":
        print(json.dumps({"root": str(national_month())}))
        return 0
    if a.stage in ("national-share", "national-baseline"):
        print(json.dumps(stage_national_bucket(national_month(), a.stage.split("-")[1])))
        return 0
    if a.stage:
        fn = {"compute": stage_compute, "hold": stage_hold, "subset": stage_subset,
              "baseline": stage_baseline, "national": stage_national}[a.stage]
        print(json.dumps(fn(national_month() if a.stage == "national" else a.root)))
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
                     "shares_cpu_seconds": comp["shares_cpu_seconds"],
                     "baseline_seconds": base["seconds"],
                     "baseline_cpu_seconds": base["cpu_seconds"],
                     "baseline_rss_mb": base["peak_rss_mb"],
                     "subset_seconds": sub["seconds"], "subset_cpu_seconds": sub["cpu_seconds"],
                     "subset_kept": sub["kept"]})
        print(rows[-1], flush=True)
    # a synthetic national month (generated by the first child, once): the lake-state step,
    # then one bucket's read, share and baseline alternated twice (best of two)
    _child_json(["--stage", "national-data"])
    nat = _child_json(["--stage", "national"])
    for _ in range(2):
        for way in ("share", "baseline"):
            r = _child_json(["--stage", f"national-{way}"])
            best = nat.get(way)
            if best is None or r["cpu_seconds"] < best["cpu_seconds"]:
                nat[way] = r
    print(nat, flush=True)
    rows[-1]["national_month"] = nat
    lines = render(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "declarations.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (RESULTS / "declarations.json").write_text(json.dumps(rows, indent=1) + "\n",
                                               encoding="utf-8")
    print("\n".join(lines))
    return 0


def national_estimates(rows: list[dict]) -> dict:
    """National-year figures from the measured rows (also read by ``bench_scale``): the
    current declarations' CPU (bucket shares apart) and memory fitted on the lake's
    declarations; the bucket shares and one bucket run's read of its share from the
    synthetic national month (×12 for the year), when it was measured."""
    nat = NATIONAL_DECLARATIONS_PER_YEAR / 1e6
    share = declarations_share(NATIONAL_PEOPLE_PER_DECLARATION, NATIONAL_BUCKETS)
    current = [{"declarations": r["declarations"],
                "cpu": r["compute_cpu_seconds"] - r.get("shares_cpu_seconds", 0.0)} for r in rows]
    (c_t, ci_t), (c_m, ci_m) = slope(current, "cpu"), slope(rows, "compute_rss_mb")
    h_m, hi_m = slope(rows, "peak_rss_mb")
    out = {"millions": nat, "share": share, "buckets": NATIONAL_BUCKETS,
           "current_cpu_per_m": c_t, "current_cpu_s": c_t * nat + ci_t,
           "compute_mb_per_m": c_m, "compute_mb": c_m * nat + ci_m,
           "held_mb_per_m": h_m, "held_mb": h_m * share * nat + hi_m, "all_mb": h_m * nat + hi_m,
           "shares_cpu_s": None, "subset_cpu_s": None}
    month = rows[-1].get("national_month")
    if month:
        out.update(shares_cpu_s=12 * month["shares_cpu_seconds"],
                   subset_cpu_s=12 * month["share"]["cpu_seconds"],
                   former_cpu_s=12 * month["baseline"]["cpu_seconds"])
    return out


def render(rows: list[dict]) -> list[str]:
    lines = ["# Cost of the lake's current declarations for crediting",
             "", "`python -m benchmarks.bench_declarations` — fresh processes per cell. "
             "*compute*: the lake state's current declarations (A&R, fractions, ranks) from "
             "scratch, one declared month at a time, with each bucket's share of them (*shares*: "
             "which current declarations the bucket's contract rows refer to), kept on disk "
             "(once per lake state). "
             "*hold*: `run_declarations` over every bucket (decl_id Enum + identity links over "
             "the whole lake's individuals) — what a process holds when its run needs every "
             "declaration; a bucket run holds only its share. *bucket subset*: what a bucket "
             "run pays to find its share (a worker's second bucket).",
             "Baseline (same run): Polars scan of the same `decl_id` column sorted as strings.",
             "Lookup: ns per person-table row to find its declaration rank (1 M rows, in runs "
             f"of {ROWS_PER_DECLARATION} rows of one declaration).",
             "", "| declarations | compute s | compute CPU s | of which shares CPU s | "
             "compute peak RSS MB | hold s | hold peak RSS MB | bucket share kept | "
             "bucket subset s | bucket subset CPU s | lookup ns/row | baseline s | "
             "baseline RSS MB | load 1/5/15 |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    nan = float("nan")
    for r in rows:
        lines.append(f"| {r['declarations']:,} | {r['compute_seconds']:.2f} | "
                     f"{r['compute_cpu_seconds']:.2f} | {r.get('shares_cpu_seconds', nan):.2f} | "
                     f"{r['compute_rss_mb']:,.0f} | "
                     f"{r['seconds']:.2f} | {r['peak_rss_mb']:,.0f} | "
                     f"{r.get('subset_kept', 0):,} | "
                     f"{r.get('subset_seconds', nan):.2f} | "
                     f"{r.get('subset_cpu_seconds', nan):.2f} | "
                     f"{r['lookup_ns_per_row']:.0f} | {r['baseline_seconds']:.2f} | "
                     f"{r['baseline_rss_mb']:,.0f} | {r['load']} |")
    e = national_estimates(rows)
    nat, share = e["millions"], e["share"]
    lines += ["", f"Fitted per million declarations: compute (shares apart) "
              f"{e['current_cpu_per_m']:.2f} CPU-s and {e['compute_mb_per_m']:,.0f} MB; hold "
              f"{e['held_mb_per_m']:,.0f} MB.", ""]
    month = rows[-1].get("national_month")
    shares_txt = ""
    if month:
        shares_txt = (f" Each bucket's share (which of them its contract rows refer to: ranks "
                      f"and bucket numbers) takes {month['shares_cpu_seconds']:.0f} CPU-s and "
                      f"{month['shares_peak_rss_mb']:,.0f} MB peak for a synthetic national "
                      f"month ({month['contract_rows'] / 1e6:.0f} M contract rows, "
                      f"{month['month_declarations'] / 1e6:.0f} M declarations, "
                      f"{month['buckets']} buckets) → **≈ {e['shares_cpu_s']:.0f} CPU-s a year, "
                      "once per lake state**.")
    lines += [f"National year ({nat:.0f} M declarations): **current declarations computed once "
              f"per lake state in ≈ {e['current_cpu_s']:.0f} CPU-s, peak "
              f"≈ {e['compute_mb'] / 1024:.1f} GB** (one month at a time, so this peak "
              "follows a month's declarations as much as the year's; the fit is linear in the "
              f"year's, an upper bound).{shares_txt} **A bucket run holds only its share**: "
              f"with ~{NATIONAL_PEOPLE_PER_DECLARATION} people per declaration and "
              f"{NATIONAL_BUCKETS} buckets a declaration reaches a given bucket with odds "
              f"1 − (1 − 1/{NATIONAL_BUCKETS})^{NATIONAL_PEOPLE_PER_DECLARATION} = "
              f"{share:.1%}, i.e. ≈ {share * nat:.1f} M declarations ≈ "
              f"**{e['held_mb'] / 1024:.2f} GB per process** (against "
              f"≈ {e['all_mb'] / 1024:.1f} GB if it held all of them). The bench lakes "
              "(100 people per declaration, 16 buckets) reach every bucket with every "
              "declaration: there a bucket run still holds them all."]
    last = rows[-1]
    if month:
        lines += ["", "**What every bucket run pays to find them** (*bucket subset*): a read of "
                  f"its bucket's share only: in the bench lakes {rows[0]['subset_cpu_seconds']:.2f}"
                  f" CPU-s with {rows[0]['declarations']:,} declarations in the lake and "
                  f"{last['subset_cpu_seconds']:.2f} with {last['declarations']:,} (share "
                  f"{last['subset_kept']:,}): it follows the share, not the lake. On the "
                  f"synthetic national month (bucket 0, best of two): "
                  f"{month['share']['cpu_seconds']:.2f} CPU-s and "
                  f"{month['share']['peak_rss_mb']:,.0f} MB peak for its share of "
                  f"{month['share']['kept']:,}, against {month['baseline']['cpu_seconds']:.2f} "
                  f"CPU-s and {month['baseline']['peak_rss_mb']:,.0f} MB to semi-join the "
                  "month's whole list with its contracts' decl_ids (the former way, baseline) "
                  f"→ a national year: **≈ {e['subset_cpu_s']:.1f} CPU-s per bucket, "
                  f"≈ {e['subset_cpu_s'] * NATIONAL_BUCKETS / 60:.1f} CPU-minutes per national "
                  f"campaign** ({NATIONAL_BUCKETS} buckets; the former way "
                  f"≈ {e['former_cpu_s']:.1f} CPU-s per bucket, "
                  f"≈ {e['former_cpu_s'] * NATIONAL_BUCKETS / 60:.1f} CPU-minutes), which the "
                  "per-person crediting extrapolation (bench lakes: 1 declaration per 100 "
                  "people) does not include."]
    lines += ["",
              f"Row lookups: {rows[0]['lookup_ns_per_row']:.0f} ns per row at "
              f"{rows[0]['declarations']:,} declarations, {rows[-1]['lookup_ns_per_row']:.0f} ns "
              f"at {rows[-1]['declarations']:,}. A national campaign reads about 23 "
              "person-table rows per person (37 M people: ~850 M lookups), i.e. "
              f"~{850e6 * rows[-1]['lookup_ns_per_row'] / 1e9 / 60:.1f} CPU-minutes at the "
              "largest size measured, spread over the buckets."]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
