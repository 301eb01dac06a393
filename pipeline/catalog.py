"""The analysts' DuckDB catalog: DIR/cpf.duckdb, views over the PUBLISHED Parquet files.

Built into a temporary file next to it, closed, fsynced, then ``os.replace``'d: an analyst who
holds the old file open read-only keeps reading the old (consistent) inode and never blocks the
campaign; a new connection sees the new publication. The views use ABSOLUTE paths so the file
can be opened from anywhere; ``catalog_info.lake_dir`` names the DIR they read, so that a copy
or a move of DIR is caught (``check_location``) and rebuilt (``cpf catalog``). View definitions live in ``sql/views/*.sql`` (``${name}`` is
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
        years = sorted(int(y) for y in current.get("latest_by_year", {}))
        con.execute("CREATE TABLE catalog_info AS SELECT ? AS run_id, ? AS year, "
                    "?::INTEGER[] AS years, ? AS lake_dir",
                    [current["run_id"], current.get("year"), years, str(root)])
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


class CatalogElsewhere(ValueError):
    """The catalog's views read another DIR's files (the DIR was copied or moved), or an
    older run's files than the latest published one."""


def check_location(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """The views hold absolute paths (so the file opens from anywhere): in a copy or a move
    of DIR they read the original's files — silently — or nothing. Refused, with the fix."""
    cols = {r[0] for r in con.execute("DESCRIBE catalog_info").fetchall()}
    if "lake_dir" not in cols:  # a catalog built before the column existed
        return
    built, run_id = con.execute("SELECT lake_dir, run_id FROM catalog_info").fetchone()
    here = str(Path(root).resolve())
    if built != here:
        raise CatalogElsewhere(f"{Path(root) / CATALOG} reads the files of {built}, not of "
                               f"{here} (a copied or moved DIR): rebuild it with "
                               f"cpf catalog --lake {root}")
    # a run killed between its commit point (CURRENT) and the catalog's rebuild leaves the
    # catalog on the previous run: its figures would be served as today's, silently
    latest = read_current(Path(root)).get("run_id")
    if latest and run_id != latest:
        raise CatalogElsewhere(f"{Path(root) / CATALOG} shows run {run_id}, but the latest "
                               f"published run is {latest} (a run stopped before rebuilding "
                               f"the catalog, or one is rebuilding it now): retry in a moment, "
                               f"or rebuild it with cpf catalog --lake {root}")


def run_query(root: Path, name_or_sql: str) -> duckdb.DuckDBPyRelation | list:
    """Run a named query (or SQL text) read-only against the catalog; returns (columns, rows)."""
    sql = queries().get(name_or_sql, name_or_sql)
    con = duckdb.connect(str(Path(root) / CATALOG), read_only=True)
    try:
        check_location(con, root)
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description]
        return cols, cur.fetchall()
    finally:
        con.close()
