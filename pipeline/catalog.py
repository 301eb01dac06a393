"""The analysts' DuckDB catalog: DIR/cpf.duckdb, views over the PUBLISHED Parquet files.

Built into a temporary file next to it, closed, fsynced, then ``os.replace``'d: an analyst who
holds the old file open read-only keeps reading the old (consistent) inode and never blocks the
campaign; a new connection sees the new publication. The views use ABSOLUTE paths so the file
can be opened from anywhere. View definitions live in ``sql/views/*.sql`` (``${name}`` is
replaced by the list of Parquet files of that snapshot); ready queries in ``sql/queries/*.sql``.
"""

from __future__ import annotations

import os
from pathlib import Path
from string import Template

import duckdb

from pipeline.publish import (REPO, entries_path, fsync_path, read_current, run_dir,
                              snapshot_table_files)

SQL_DIR = REPO / "sql"
CATALOG = "cpf.duckdb"


def _list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(Path(p).resolve()).replace("'", "''") + "'"
                           for p in paths) + "]"


def view_sources(root: Path, current: dict | None = None) -> dict[str, str]:
    """Per view, the SQL list literal of the absolute Parquet paths it reads."""
    root = Path(root).resolve()
    current = current or read_current(root)
    if not current.get("run_id"):
        raise ValueError(f"nothing published in {root}")
    cur = run_dir(root, current["run_id"])
    per_year = [run_dir(root, rid) for _, rid in sorted(current["latest_by_year"].items())]
    return {
        "annual_credits": _list([d / "annual_credits.parquet" for d in per_year]),
        "uncreditable": _list([d / "uncreditable.parquet" for d in per_year]),
        "employments": _list([d / "employments.parquet" for d in per_year]),
        "ledger_entries": _list([entries_path(root, r["run_id"]) for r in current["published"]]),
        "quarantine": _list(snapshot_table_files(cur, "quarantine")),
        "balances": _list([cur / "balances.parquet"]),
        "declarations": _list(snapshot_table_files(cur, "declarations")),
        "dotation_lots": _list([cur / "dotation_lots.parquet"]),
        "runs": _list([cur / "runs.parquet"]),
    }


def view_sql(root: Path, current: dict | None = None) -> list[tuple[str, str]]:
    src = view_sources(root, current)
    out = []
    for f in sorted((SQL_DIR / "views").glob("*.sql")):
        out.append((f.stem, Template(f.read_text()).substitute(src)))
    return out


def build_catalog(root: Path, current: dict | None = None) -> Path:
    """(Re)build DIR/cpf.duckdb atomically from CURRENT."""
    root = Path(root).resolve()
    current = current or read_current(root)
    target = root / CATALOG
    tmp = root / f".{CATALOG}.tmp-{os.getpid()}"
    for p in (tmp, Path(str(tmp) + ".wal")):
        if p.exists():
            p.unlink()
    con = duckdb.connect(str(tmp))
    try:
        for _, sql in view_sql(root, current):
            con.execute(sql)
        con.execute("CREATE TABLE catalog_info AS SELECT ? AS run_id, ? AS year",
                    [current["run_id"], current.get("year")])
        con.execute("CHECKPOINT")
    finally:
        con.close()
    fsync_path(tmp)
    os.replace(tmp, target)
    fsync_path(root)
    return target


def queries() -> dict[str, str]:
    """The ready analyst queries of sql/queries/, by name."""
    return {f.stem: f.read_text() for f in sorted((SQL_DIR / "queries").glob("*.sql"))}


def run_query(root: Path, name_or_sql: str) -> duckdb.DuckDBPyRelation | list:
    """Run a named query (or SQL text) read-only against the catalog; returns (columns, rows)."""
    sql = queries().get(name_or_sql, name_or_sql)
    con = duckdb.connect(str(Path(root) / CATALOG), read_only=True)
    try:
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description]
        return cols, cur.fetchall()
    finally:
        con.close()
