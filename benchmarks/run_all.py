"""`make bench`: run every benchmark script in its own process and index the results.

Why separate processes: peak RSS (ru_maxrss) is per process, so each benchmark measures its
own memory, and one benchmark's caches cannot flatter the next one. Each script writes its
figures to ``benchmarks/results/<what>.md`` (``bench_<what>``); this driver writes the index the README links.

Environment knobs (all optional) are passed through untouched: see each script's ``--help``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# (script, its arguments, the results file stem it writes)
# Ingestion runs with its 2 parse processes: left to its default, ingestion starts a single
# process when the load average shows no idle CPU (as right after the previous benchmark).
RUNS = (("bench_ingest", ["--workers", "2"], "ingest"),
        # national DSN files are small (~2 M files a month for 150 GB: ~75 KB each), and
        # per-file costs (opening, checksums, per-declaration work) weigh with their number
        ("bench_ingest", ["--workers", "2", "--mb", "1024", "--people-per-employer", "17",
                          "--out", "ingest_small_files"], "ingest_small_files"),
        # the sizes: crediting from a lake of >= 1 M people-years; the scale curve
        # up to 5 M (7 GB of lake)
        ("bench_credit", ["--people", "1000000"], "credit"),
        ("bench_declarations", [], "declarations"),
        ("bench_compact", [], "compact"),
        ("bench_scale", ["--lake-sizes", "10000,100000,1000000,5000000"], "scale"))
SCRIPTS = tuple(dict.fromkeys(name for name, _, _ in RUNS))


def main(argv: list[str]) -> int:
    if {"-h", "--help"} & set(argv) or set(argv) - set(SCRIPTS):
        # an unknown name used to run nothing and overwrite the index with an empty table
        print(f"usage: python -m benchmarks.run_all [SCRIPT ...]  (scripts: {', '.join(SCRIPTS)};"
              " none = all)", file=sys.stderr)
        return 0 if {"-h", "--help"} & set(argv) else 2
    only = set(argv) or set(SCRIPTS)
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, float, str]] = []
    failed = False
    for name, args, stem in RUNS:
        if name not in only:
            continue
        label = " ".join([name, *args])
        if not (HERE / f"{name}.py").exists():
            rows.append((label, "missing", 0.0, stem))
            continue
        print(f"== benchmark {label}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}", *args],
                             cwd=HERE.parent)
        status = "ok" if rc == 0 else f"failed (exit {rc})"
        failed |= rc != 0
        rows.append((label, status, time.perf_counter() - t0, stem))
    lines = ["# Benchmark results", "",
             "Written by `make bench` (benchmarks/run_all.py). Each benchmark compares against a",
             "baseline measured in the same run; figures are from this repository's 2-core machine.",
             "", "| benchmark | status | wall time (s) | figures |", "|---|---|---|---|"]
    for label, status, secs, stem in rows:
        lines.append(f"| {label} | {status} | {secs:.1f} | [{stem}.md]({stem}.md) |")
    (RESULTS / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print((RESULTS / "README.md").read_text(encoding="utf-8"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
