"""The run report: ``runs/<run_id>/report/index.html`` with the run's totals, the input it
set aside (quarantined lines, declarations not used, by cause) and two charts.

Why apart from the publication code: it only presents a run (operators open it after a
campaign). Nothing reads it back and it is outside the manifest's checksums: replay neither
writes nor compares it. Still, its bytes depend on the data only (no version or time metadata
in the PNG files).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

RATIO_BINS = 30


def eur(cents: int | None) -> str:
    """Cents as euros for people ("1 234.56 €"); empty for None."""
    return "" if cents is None else f"{cents / 100:,.2f} €".replace(",", " ")


def amount_text(cents: int, hours: int | None) -> str:
    """A run's amount: whole hours when it is in hours (an hour-era year, 2015-2018, posts
    no cents), else euros."""
    return f"{hours} h" if hours and not cents else eur(cents)


def ratio_histogram(credits: pl.LazyFrame, bins: int = RATIO_BINS) -> tuple[list[int], list[float]]:
    """(counts, edges) of the worked ratio clipped to [0, 1.5], ``bins`` equal bins between its
    min and max (as matplotlib's ``hist`` would draw them), aggregated by Polars: memory does
    not grow with the number of people."""
    x = pl.col("worked_ratio").cast(pl.Float64).clip(0, 1.5)
    lo, hi = credits.select(x.min().alias("lo"), x.max().alias("hi")).collect().row(0)
    if lo is None:
        return [], []
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    width = (hi - lo) / bins
    per_bin = (credits.select(((x - lo) / width).floor().clip(0, bins - 1).cast(pl.Int64)
                              .alias("b"))
               .drop_nulls().group_by("b").agg(pl.len().alias("n")).collect())
    counts = [0] * bins
    for b, n in per_bin.iter_rows():  # at most ``bins`` rows
        counts[b] = int(n)
    return counts, [lo + i * width for i in range(bins + 1)]


def set_aside(run: Path) -> dict:
    """What of the lake a run saw it did not use, from its snapshot's ``declarations`` and
    ``quarantine`` (every declared month): declarations not used by cause, and quarantine
    rows by scope and reason (warnings included: their lines are parsed). The engineering
    rule is that bad input is kept and counted, so the report and the run's note say it."""
    from parsers.codes import NATURE_MENSUELLE, Reason
    from pipeline.publish import snapshot_table_files
    out: dict = {"declarations": 0, "declarations_not_used": {}, "quarantine": []}
    files = [f for f in snapshot_table_files(Path(run), "declarations") if f.exists()]
    if files and "current" in pl.read_parquet_schema(files[0]):
        d = pl.scan_parquet(files)
        cause = (pl.when(pl.col("current")).then(None)
                 .when(pl.col("rejected").fill_null(False)).then(pl.lit("rejected"))
                 .when(pl.col("envoi_is_test").fill_null(False)).then(pl.lit("test envoi"))
                 .when(pl.col("superseded_reason") == Reason.REPLACED_DECLARATION)
                 .then(pl.lit("replaced by an annule-et-remplace"))
                 .when(pl.col("superseded_reason") == Reason.OLDER_VERSION)
                 .then(pl.lit("older version of a (SIRET, month, fraction) declared again"))
                 .when(pl.col("nature") != NATURE_MENSUELLE).then(pl.lit("not a DSN mensuelle"))
                 .otherwise(pl.lit("no SIRET or declared month")))
        n = d.select(cause.alias("cause")).group_by("cause").len().sort("cause").collect()
        out["declarations"] = int(n["len"].sum())
        out["declarations_not_used"] = {c: int(k) for c, k in n.iter_rows() if c is not None}
    files = [f for f in snapshot_table_files(Path(run), "quarantine") if f.exists()]
    if files:
        q = (pl.scan_parquet(files).group_by("scope", "reason").len()
             .sort("scope", "reason").collect())
        out["quarantine"] = [(s, r, int(k)) for s, r, k in q.iter_rows()]
    return out


def write_report(out: Path, manifest: dict, credits: pl.DataFrame | pl.LazyFrame,
                 inputs_set_aside: dict | None = None) -> Path:
    """report/index.html with the totals, the input set aside (``set_aside``) and two
    charts: ratio distribution, credits by category.

    ``credits`` (worked_ratio, category, credit_cents) may be lazy: only aggregates are
    collected."""
    by_cat = draw_charts(out, manifest, credits)
    return write_page(out, manifest, by_cat, inputs_set_aside)


def draw_charts(out: Path, manifest: dict, credits: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """The two PNG charts; returns the credits by category (the page's table)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    meta = {"Software": None}  # no version/time metadata: same data, same bytes
    fig, ax = plt.subplots(figsize=(6, 3.2))
    counts, edges = ratio_histogram(credits.lazy())
    if counts:
        ax.stairs(counts, edges, fill=True, color="#3060a0")
    ax.axvline(0.5, color="#c04040", linestyle="--", linewidth=1)
    ax.set_xlabel("worked-time ratio")
    ax.set_ylabel("people")
    ax.set_title(f"Worked-time ratio, year {manifest['year']}")
    fig.tight_layout()
    fig.savefig(out / "ratio_distribution.png", metadata=meta)
    plt.close(fig)
    by_cat = (credits.lazy().group_by("category")
              .agg(pl.col("credit_cents").sum().alias("credit_cents"), pl.len().alias("people"))
              .sort("category").collect())
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar([str(c) for c in by_cat["category"].to_list()],
           [c / 100 for c in by_cat["credit_cents"].to_list()], color="#40a070")
    ax.set_ylabel("credited (EUR)")
    ax.set_title(f"Credits by category, year {manifest['year']}")
    fig.tight_layout()
    fig.savefig(out / "credits_by_category.png", metadata=meta)
    plt.close(fig)
    return by_cat


def write_page(out: Path, manifest: dict, by_cat: pl.DataFrame,
               inputs_set_aside: dict | None = None) -> Path:
    """report/index.html from the manifest, the credits by category and the input set aside."""
    import html

    out.mkdir(parents=True, exist_ok=True)
    rows = "".join(
        f"<tr><td>{html.escape(str(c))}</td><td>{p}</td><td>{eur(a)}</td></tr>"
        for c, p, a in zip(by_cat["category"], by_cat["people"], by_cat["credit_cents"]))
    hours = manifest.get("totals_hours", {})  # an hour-era year (2015-2018) credits hours
    kinds = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{manifest['counts']['entries_by_kind'][k]}</td>"
        f"<td>{amount_text(v, hours.get('entries_by_kind', {}).get(k))}</td></tr>"
        for k, v in manifest["totals_cents"]["entries_by_kind"].items())
    c, t = manifest["counts"], manifest["totals_cents"]
    aside = ""
    if inputs_set_aside is not None:
        not_used = inputs_set_aside["declarations_not_used"]
        decl_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>"
                            for k, v in not_used.items())
        q_rows = "".join(f"<tr><td>{html.escape(str(s))}</td><td>{html.escape(str(r))}</td>"
                         f"<td>{n}</td></tr>" for s, r, n in inputs_set_aside["quarantine"])
        aside = f"""<h2>Input set aside (the lake as this run saw it, every declared month)</h2>
<p>{inputs_set_aside['declarations']} declaration(s), {sum(not_used.values())} not used.
Each row below is in the catalog's <code>quarantine</code> view with its file, line and
rubrique; the view also lists each replaced or older declaration (scope <code>version</code>)
counted in the first table.</p>
<table><tr><th>declarations not used, because</th><th>declarations</th></tr>{decl_rows}</table>
<table><tr><th>scope</th><th>reason</th><th>rows</th></tr>{q_rows}</table>
"""
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>CPF run {manifest['run_id']}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}</style>
</head><body>
<h1>CPF crediting — year {manifest['year']}</h1>
<p>Run <code>{manifest['run_id']}</code> (sequence {manifest['seq']}), run date
{manifest['inputs']['as_of']}, parameters <code>{html.escape(str(manifest['inputs']['param_version']))}</code>,
code <code>{manifest['inputs']['code_version']}</code>, {manifest['inputs'].get('dsn_files', len(manifest['inputs'].get('dsn_sha256', [])))} DSN file(s).</p>
<table><tr><th>people examined</th><td>{c['examined']}</td></tr>
<tr><th>people credited</th><td>{c['credited']}</td></tr>
<tr><th>not creditable</th><td>{c['uncreditable']}</td></tr>
<tr><th>credited this year</th><td>{amount_text(t['credit'], hours.get('credit'))}</td></tr>
<tr><th>entries posted by this run</th><td>{c['entries']} ({eur(t['entries'])})</td></tr></table>
<h2>Entries posted by this run</h2>
<table><tr><th>kind</th><th>entries</th><th>amount</th></tr>{kinds}</table>
<h2>Credits by category</h2>
<table><tr><th>category</th><th>people</th><th>credited</th></tr>{rows}</table>
<img src="credits_by_category.png" alt="credits by category">
{aside}<h2>Worked-time ratio</h2>
<img src="ratio_distribution.png" alt="ratio distribution">
</body></html>
"""
    (out / "index.html").write_text(page)
    return out / "index.html"
