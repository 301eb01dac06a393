"""Ingestion throughput benchmark (a script, not a test): ``python -m benchmarks.bench_ingest``.

Compares, on the same DSN files, each in its own subprocess (so ``ru_maxrss`` is per mode):
- ``ingest``  : ``parsers.ingest.ingest_paths`` (parse + validate + typed tables + lake write);
- ``polars``  : baseline (a) — Polars raw read of the two columns (rubrique, value) only, file by
  file (decode to UTF-8, ``read_csv`` of whole lines, two ``str.slice``);
- ``python``  : baseline (b) — plain Python line reader (split on first ",'", strip last "'").
Targets (issue): ingest >= 0.7 x (a), >= 5 x (b), peak RSS flat when the number of files doubles
(``ingest`` is also run on the first half of the files: N vs 2N).

The input is generated deterministically (``generator.year``, fixed seed) at ``--mb`` MB (default
1024) and cached under ``./bench_data/`` (git-ignored) for the next runs; ``--clean`` deletes it
afterwards. ``--input DIR`` benchmarks an existing folder instead.
Writes benchmarks/results/ingest.md and ingest.json. Other engineers' jobs share the machine:
the load average is recorded before and after, and the ratios (same run) matter more than MB/s.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "bench_data"
MB = 1024 * 1024
MB_PER_1000_PEOPLE = 51.4  # generator.year output (measured: 5000 people -> 257 MiB)
PEOPLE_PER_EMPLOYER = 100
YEAR = 2025
WORKERS_ENV = "CPF_BENCH_WORKERS"  # --workers, passed to the ingest child


def _files(folder: Path, limit: int | None = None) -> list[Path]:
    sys.path.insert(0, str(ROOT))
    from parsers.ingest import discover

    files = discover([folder])[0]
    return files[:limit] if limit else files


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its terminated children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_ingest(folder: Path, limit: int | None) -> dict:
    from parsers.ingest import ingest_paths

    files = _files(folder, limit)
    workers = int(os.environ[WORKERS_ENV]) if os.environ.get(WORKERS_ENV) else None
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = ingest_paths(files, Path(tmp), workers=workers)
        elapsed = time.perf_counter() - t0
        # Measured like ``seconds``: before the temporary lake is deleted (thousands of files).
        cpu_s = _cpu_seconds()
    return {"seconds": elapsed, "cpu_s": cpu_s, "lines": report.lines_read,
            "bytes": report.bytes_ingested,
            "lines_quarantined": report.lines_quarantined, "declarations": report.declarations,
            "accounting_ok": report.lines_read == report.lines_parsed + report.lines_quarantined}


def run_polars(folder: Path, limit: int | None) -> dict:
    import polars as pl

    from parsers.records import to_utf8

    t0 = time.perf_counter()
    n = 0
    for f in _files(folder, limit):
        utf8, _ = to_utf8(f.read_bytes())
        df = pl.read_csv(io.BytesIO(utf8), has_header=False, separator="\x1f", quote_char=None,
                         new_columns=["raw"], infer_schema=False)
        df = df.select(pl.col("raw").str.slice(0, 14).alias("rubrique"),
                       pl.col("raw").str.slice(16, pl.col("raw").str.len_chars() - 17).alias("value"))
        n += df.height
    return {"seconds": time.perf_counter() - t0, "lines": n}


def run_python(folder: Path, limit: int | None) -> dict:
    t0 = time.perf_counter()
    n = 0
    for f in _files(folder, limit):
        with open(f, encoding="cp1252", errors="replace", newline=None) as fh:
            rows = []
            for line in fh:
                line = line.rstrip("\r\n")
                rub, _, rest = line.partition(",'")
                rows.append((rub, rest[:rest.rfind("'")]))
            n += len(rows)
    return {"seconds": time.perf_counter() - t0, "lines": n}


MODES = {"ingest": run_ingest, "polars": run_polars, "python": run_python}


def _child(mode: str, folder: Path, limit: int | None) -> dict:
    out = MODES[mode](folder, limit)
    # CPU seconds (user + system, this process and its parse workers): the load-independent
    # cost, since other jobs share the machine and stretch the wall time.
    out.setdefault("cpu_s", _cpu_seconds())
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Parse worker processes (ingest's pool): the largest one's peak, 0 without a pool.
    out["peak_rss_worker_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return out


def _run(mode: str, folder: Path, limit: int | None = None) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_ingest", "--child", mode, "--input", str(folder)]
    if limit:
        cmd += ["--limit", str(limit)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(f"{mode} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def generate(mb: int, seed: int, per_employer: int = PEOPLE_PER_EMPLOYER) -> Path:
    """Deterministic input of about ``mb`` MiB, cached in ./bench_data/."""
    sys.path.insert(0, str(ROOT))
    from generator.year import generate_year

    folder = CACHE / (f"dsn_{mb}mb_seed{seed}" + ("" if per_employer == PEOPLE_PER_EMPLOYER
                                                  else f"_ppe{per_employer}"))
    done = folder / ".complete"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    people = max(100, round(mb / MB_PER_1000_PEOPLE * 1000))
    generate_year(folder, seed, people, max(1, people // per_employer), YEAR)
    done.write_text(json.dumps({"mb": mb, "seed": seed, "people": people}))
    return folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, help="existing folder of DSN (default: generated)")
    ap.add_argument("--mb", type=int, default=1024, help="size of the generated input (MiB)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clean", action="store_true", help="delete the generated input afterwards")
    ap.add_argument("--child", choices=list(MODES))
    ap.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, help="ingest parse processes (default: ingest's own)")
    ap.add_argument("--people-per-employer", type=int, default=PEOPLE_PER_EMPLOYER,
                    help="average people per employer, i.e. per monthly file (national DSN: "
                         "~10; per-file costs weigh more with smaller files)")
    ap.add_argument("--out", default="ingest", help="results file stem in benchmarks/results")
    args = ap.parse_args(argv)
    if args.workers:
        os.environ[WORKERS_ENV] = str(args.workers)
    if args.child:
        print(json.dumps(_child(args.child, args.input, args.limit)))
        return 0
    load_before = os.getloadavg()
    folder = args.input or generate(args.mb, args.seed, args.people_per_employer)
    files = _files(folder)
    size = sum(f.stat().st_size for f in files)
    results: dict = {"input": str(folder), "files": len(files), "mb": size / MB,
                     "cpus": os.cpu_count(), "load_before": load_before,
                     "workers": args.workers or "default",
                     "people_per_employer": None if args.input else args.people_per_employer}
    for mode in MODES:
        r = _run(mode, folder)
        r["mb_per_s"] = results["mb"] / r["seconds"]
        results[mode] = r
    half = len(files) // 2
    r = _run("ingest", folder, half)
    r["mb"] = sum(f.stat().st_size for f in files[:half]) / MB
    r["mb_per_s"] = r["mb"] / r["seconds"]
    results["ingest_half"] = r
    results["load_after"] = os.getloadavg()
    ing, pol, py = results["ingest"], results["polars"], results["python"]
    results["ingest_vs_polars"] = ing["mb_per_s"] / pol["mb_per_s"]
    results["ingest_vs_python"] = ing["mb_per_s"] / py["mb_per_s"]
    results["ingest_vs_polars_cpu"] = pol["cpu_s"] / ing["cpu_s"]
    half_r = results["ingest_half"]
    results["rss_2n_over_n"] = ing["peak_rss_mb"] / half_r["peak_rss_mb"]
    results["worker_rss_2n_over_n"] = (ing["peak_rss_worker_mb"] / half_r["peak_rss_worker_mb"]
                                       if half_r["peak_rss_worker_mb"] else None)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(results, indent=2))
    load = max(results["load_before"][0], results["load_after"][0])
    busy = load > (os.cpu_count() or 1)
    md = ["# Ingestion benchmark\n",
          f"`python -m benchmarks.bench_ingest {' '.join(sys.argv[1:])}` — input: "
          f"{results['files']} files, {results['mb']:.1f} MiB (generator.year, seed {args.seed}, "
          f"{args.people_per_employer} people per employer: "
          f"{results['mb'] * 1024 / results['files']:.0f} KiB per file); "
          f"{results['cpus']} CPUs.\n",
          f"Load average (1/5/15 min) before: {'/'.join(f'{x:.1f}' for x in results['load_before'])}, "
          f"after: {'/'.join(f'{x:.1f}' for x in results['load_after'])}"
          + (" — **machine busy (other jobs running): absolute MB/s are pessimistic, compare the "
             "ratios, measured in the same run**" if busy else "") + ".\n",
          f"Ingest parse workers: {results['workers']}. Peak RSS: the mode's own process, and "
          "the largest ingest parse worker (a process pool: total ≤ main + workers × largest).\n",
          "| mode | files | seconds | MiB/s | CPU-s | MiB per CPU-s | peak RSS MiB | largest worker RSS MiB | lines |",
          "|---|---|---|---|---|---|---|---|---|"]
    for mode, label, n in (("ingest", "ingest (2N files)", len(files)),
                           ("ingest_half", "ingest (N files)", half),
                           ("polars", "(a) polars raw read", len(files)),
                           ("python", "(b) python line reader", len(files))):
        r = results[mode]
        mb = r.get("mb", results["mb"])
        md.append(f"| {label} | {n} | {r['seconds']:.2f} | {r['mb_per_s']:.1f} | "
                  f"{r['cpu_s']:.1f} | {mb / r['cpu_s']:.1f} | "
                  f"{r['peak_rss_mb']:.0f} | {r.get('peak_rss_worker_mb', 0):.0f} | {r['lines']} |")
    md.append(f"\n- ingest / (a) polars raw read = **{results['ingest_vs_polars']:.2f}** (target >= 0.7)")
    md.append(f"- same ratio in CPU seconds (load-independent): "
              f"**{results['ingest_vs_polars_cpu']:.2f}**")
    md.append(f"- ingest / (b) python reader = **{results['ingest_vs_python']:.2f}** (target >= 5)")
    md.append(f"- peak RSS 2N / N files = **{results['rss_2n_over_n']:.2f}** (target: flat, ~1.0)"
              + (f"; largest worker 2N / N = **{results['worker_rss_2n_over_n']:.2f}**"
                 if results["worker_rss_2n_over_n"] else ""))
    md.append(f"- line accounting (read = parsed + quarantined): {ing['accounting_ok']}\n")
    (RESULTS / f"{args.out}.md").write_text("\n".join(md))
    print("\n".join(md))
    if args.clean and not args.input:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
