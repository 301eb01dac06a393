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
SCRIPTS = ("bench_ingest", "bench_credit", "bench_declarations", "bench_compact", "bench_scale")


def main(argv: list[str]) -> int:
    only = set(argv) or set(SCRIPTS)
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, float]] = []
    failed = False
    for name in SCRIPTS:
        if name not in only:
            continue
        if not (HERE / f"{name}.py").exists():
            rows.append((name, "missing", 0.0))
            continue
        print(f"== benchmark {name}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"], cwd=HERE.parent)
        status = "ok" if rc == 0 else f"failed (exit {rc})"
        failed |= rc != 0
        rows.append((name, status, time.perf_counter() - t0))
    lines = ["# Benchmark results", "",
             "Written by `make bench` (benchmarks/run_all.py). Each benchmark compares against a",
             "baseline measured in the same run; figures are from this repository's 2-core machine.",
             "", "| benchmark | status | wall time (s) | figures |", "|---|---|---|---|"]
    for name, status, secs in rows:
        figures = f"{name.removeprefix('bench_')}.md"  # each script writes results/<what>.md
        lines.append(f"| {name} | {status} | {secs:.1f} | [{figures}]({figures}) |")
    (RESULTS / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print((RESULTS / "README.md").read_text(encoding="utf-8"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
