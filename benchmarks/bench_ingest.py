"""Ingestion throughput benchmark (a script, not a test).

Compares, on the same DSN files, in separate processes (so each peak RSS is its own):
- ``ingest``  : ``parsers.ingest.ingest_paths`` (parse + validate + typed tables + lake write);
- ``polars``  : baseline (a) — Polars raw read of the two columns (rubrique, value) only;
- ``python``  : baseline (b) — plain Python line reader (split on first ",'", strip last "'").
Targets: ingest >= 0.7 x (a) and >= 5 x (b).

Usage:
  python benchmarks/bench_ingest.py --input DIR            # a folder of DSN files
  python benchmarks/bench_ingest.py --generate --people 20000 --employers 200
Writes benchmarks/results/ingest.md and ingest.json.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MB = 1024 * 1024


def _files(folder: Path) -> list[Path]:
    sys.path.insert(0, str(ROOT))
    from parsers.ingest import discover

    return discover([folder])[0]


def run_ingest(folder: Path) -> dict:
    from parsers.ingest import ingest_paths

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = ingest_paths([folder], Path(tmp))
        elapsed = time.perf_counter() - t0
    return {"seconds": elapsed, "lines": report.lines_read,
            "lines_quarantined": report.lines_quarantined, "declarations": report.declarations}


def run_polars(folder: Path) -> dict:
    import polars as pl

    from parsers.records import to_utf8

    t0 = time.perf_counter()
    n = 0
    for f in _files(folder):
        utf8, _ = to_utf8(f.read_bytes())
        df = pl.read_csv(io.BytesIO(utf8), has_header=False, separator="\x1f", quote_char=None,
                         new_columns=["raw"], infer_schema=False)
        df = df.select(pl.col("raw").str.slice(0, 14).alias("rubrique"),
                       pl.col("raw").str.slice(16, pl.col("raw").str.len_chars() - 17).alias("value"))
        n += df.height
    return {"seconds": time.perf_counter() - t0, "lines": n}


def run_python(folder: Path) -> dict:
    t0 = time.perf_counter()
    n = 0
    for f in _files(folder):
        with open(f, encoding="cp1252", errors="replace", newline=None) as fh:
            rows = []
            for line in fh:
                line = line.rstrip("\r\n")
                rub, _, rest = line.partition(",'")
                rows.append((rub, rest[:rest.rfind("'")]))
            n += len(rows)
    return {"seconds": time.perf_counter() - t0, "lines": n}


MODES = {"ingest": run_ingest, "polars": run_polars, "python": run_python}


def _child(mode: str, folder: Path) -> dict:
    out = MODES[mode](folder)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", type=Path)
    ap.add_argument("--generate", action="store_true")
    ap.add_argument("--people", type=int, default=5000)
    ap.add_argument("--employers", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--child", choices=list(MODES))
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.input)))
        return 0
    folder = args.input
    tmp = None
    if args.generate or folder is None:
        sys.path.insert(0, str(ROOT))
        from generator.year import generate_year

        tmp = tempfile.TemporaryDirectory()
        folder = Path(tmp.name) / "dsn"
        generate_year(folder, args.seed, args.people, args.employers, 2025)
    size = sum(f.stat().st_size for f in _files(folder))
    results = {"input": str(folder), "files": len(_files(folder)), "mb": size / MB}
    for mode in MODES:
        proc = subprocess.run([sys.executable, __file__, "--child", mode, "--input", str(folder)],
                              capture_output=True, text=True, check=True, cwd=ROOT)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["mb_per_s"] = results["mb"] / r["seconds"]
        results[mode] = r
    results["ingest_vs_polars"] = results["ingest"]["mb_per_s"] / results["polars"]["mb_per_s"]
    results["ingest_vs_python"] = results["ingest"]["mb_per_s"] / results["python"]["mb_per_s"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(results, indent=2))
    md = [f"# Ingestion benchmark\n", f"Input: {results['files']} files, {results['mb']:.1f} MB\n",
          "| mode | seconds | MB/s | peak RSS MB | lines |", "|---|---|---|---|---|"]
    for mode in MODES:
        r = results[mode]
        md.append(f"| {mode} | {r['seconds']:.2f} | {r['mb_per_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['lines']} |")
    md.append(f"\ningest / polars raw read = {results['ingest_vs_polars']:.2f} (target >= 0.7); "
              f"ingest / python reader = {results['ingest_vs_python']:.2f} (target >= 5)\n")
    (RESULTS / "ingest.md").write_text("\n".join(md))
    print("\n".join(md))
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
