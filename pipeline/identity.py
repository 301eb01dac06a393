"""Identity resolution (dsn_format.md §1.5, cpf_rules.md §2.1): rows declared under an NTT, an
old NIR or an old contract key count for the current NIR and contract; chains are followed,
conflicts are reported, never guessed. Read once per process, from current declarations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.contract_keys import KEY_NULL, KEY_SEP, packed_contract_key
from pipeline.lake_reads import nir_buckets, scan_table

# kind "ntt": NTT-only rows (nir null, bucket 0) whose NTT is ``old_id``; kind "nir": rows
# declared under the old NIR ``old_id`` (S21.G00.31.008). ``linked_nir`` is the CURRENT NIR
# (end of the chain), ``link_bucket`` its bucket, ``src_bucket`` the bucket of the old rows.
LINKS_SCHEMA = {"kind": pl.String, "old_id": pl.String, "linked_nir": pl.String,
                "link_bucket": pl.Int32, "src_bucket": pl.Int32}
CONFLICT_SCHEMA = {"nir": pl.String, "detail": pl.String}
CONTRACT_LINKS_SCHEMA = {"_ck": pl.String, "_ck_new": pl.String}
CHAIN_STEPS = 32  # pointer-jumping steps: chains up to 2**31 links (cycles stop here)


@dataclass(frozen=True)
class Identity:
    """A run's identity resolution, from CURRENT declarations only (``identity_links``)."""

    links: pl.DataFrame  # LINKS_SCHEMA: which rows count for which current NIR
    conflicts: pl.DataFrame  # CONFLICT_SCHEMA: NIRs withheld (conflicting NIR links)
    contract_links: pl.DataFrame  # CONTRACT_LINKS_SCHEMA: packed old key -> current key
    contract_conflicts: pl.DataFrame  # CONFLICT_SCHEMA: contract keys left unmerged

    def nir_pairs(self) -> pl.DataFrame:
        """(old_nir, nir): each former NIR (S21.G00.31.008, chains followed) and the current
        NIR its rows, balance and register rows count for."""
        return (self.links.filter(pl.col("kind") == "nir")
                .select(pl.col("old_id").alias("old_nir"), pl.col("linked_nir").alias("nir")))


def resolve_chains(edges: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Transitive closure of ``old -> new`` identity links (String columns).

    Returns ``(resolved, conflicts)``: ``resolved`` (old, final) for every old identifier whose
    chain is unambiguous (old -> new -> newer … -> final, final having no link of its own);
    ``conflicts`` (key, detail): an old identifier linked to SEVERAL new ones, every old whose
    chain reaches such an identifier or a cycle, and the final identity of every claimant.
    Conflicts are never guessed. Pointer jumping: ⌈log2(chain length)⌉ + 1 vectorised steps."""
    edges = edges.filter(pl.col("old") != pl.col("new")).unique().sort("old", "new")
    claims = edges.group_by("old").agg(pl.len().alias("_n"),
                                       pl.col("new").sort().str.join(",").alias("_claims"))
    ambiguous = claims.filter(pl.col("_n") > 1).select("old", "_claims")
    single = edges.join(ambiguous, on="old", how="anti")
    cur = single.rename({"new": "final"})
    for _ in range(CHAIN_STEPS):
        nxt = (cur.join(cur.select(pl.col("old").alias("final"), pl.col("final").alias("_next")),
                        on="final", how="left")
               .select("old", pl.coalesce("_next", "final").alias("final")).sort("old"))
        if nxt.equals(cur):
            break
        cur = nxt
    in_cycle = pl.col("final").is_in(single["old"].implode())
    stuck = pl.col("final").is_in(ambiguous["old"].implode())
    resolved = cur.filter(~in_cycle & ~stuck)
    final_of = resolved.rename({"old": "new", "final": "_final"})
    claimants = (edges.join(ambiguous, on="old", how="inner")
                 .join(final_of, on="new", how="left")
                 .select(pl.coalesce("_final", "new").alias("key"),
                         pl.format("claims old identifier {} with {}", "old", "_claims")
                         .alias("detail")))
    conflicts = pl.concat([
        ambiguous.select(pl.col("old").alias("key"),
                         pl.format("old identifier claimed by {}", "_claims").alias("detail")),
        claimants,
        cur.filter(stuck).select(pl.col("old").alias("key"),
                                 pl.format("chain reaches {}, claimed by several", "final")
                                 .alias("detail")),
        cur.filter(in_cycle).select(pl.col("old").alias("key"),
                                    pl.lit("cycle of identity links").alias("detail")),
    ])
    conflicts = (conflicts.unique().sort("key", "detail")
                 .group_by("key", maintain_order=True).agg(pl.col("detail").str.join("; ")))
    return resolved.sort("old"), conflicts


def identity_links(root_dir: Path | str, current: pl.LazyFrame) -> Identity:
    """Identity links read from current declarations (``current``: their decl_id) over every
    bucket.

    - old NIR -> NIR (dsn_format.md §1.5): an S21.G00.31 whose .008 (ancien NIR) differs
      from the individual's 30.001 links the old NIR to it; chains are followed (old -> new
      -> newer); an old NIR claimed by several NIRs is a conflict (``resolve_chains``): every
      NIR involved is withheld and reported, never guessed;
    - NTT -> NIR (cpf_rules.md §2.1, dsn_format.md S21.G00.30.020): a current declaration
      carrying BOTH a NIR and an NTT links that NTT to that NIR (resolved through the NIR
      links); an NTT linked to several NIRs stays unlinked (its rows stay ``ntt_only``);
    - old contract key -> contract key: an S21.G00.41 with .012 (SIRET ancien établissement)
      and/or .014 (ancien numéro) links (nir, old siret, old number) to its contract's
      (nir, siret, number), NIRs resolved first; chained; conflicting links left unmerged."""
    nir_edges = (scan_table(root_dir, "individual_changes")
                 .filter(pl.col("old_nir").is_not_null() & pl.col("nir").is_not_null())
                 .join(current, on="decl_id", how="semi")
                 .select(pl.col("old_nir").alias("old"), pl.col("nir").alias("new")).collect())
    resolved, nir_conflicts = resolve_chains(nir_edges)
    final = resolved.select(pl.col("old").alias("nir"), pl.col("final").alias("_final"))

    def resolve_nir(df: pl.DataFrame) -> pl.DataFrame:
        return (df.join(final, on="nir", how="left")
                .with_columns(pl.coalesce("_final", "nir").alias("nir")).drop("_final"))

    both = resolve_nir(scan_table(root_dir, "individuals")
                       .filter(pl.col("ntt").is_not_null() & pl.col("nir").is_not_null())
                       .select("decl_id", "ntt", "nir").join(current, on="decl_id", how="semi")
                       .select("ntt", "nir").unique().collect())
    ntt = (both.group_by("ntt").agg(pl.col("nir").min().alias("linked_nir"),
                                    pl.col("nir").n_unique().alias("_n"))
           .filter(pl.col("_n") == 1))
    links = pl.concat([
        ntt.select(pl.lit("ntt").alias("kind"), pl.col("ntt").alias("old_id"), "linked_nir"),
        resolved.select(pl.lit("nir").alias("kind"), pl.col("old").alias("old_id"),
                        pl.col("final").alias("linked_nir")),
    ])
    nb = nir_buckets(root_dir, pl.concat([links["linked_nir"], resolved["old"]]).unique())
    links = (links.join(nb.rename({"nir": "linked_nir", "bucket": "link_bucket"}),
                        on="linked_nir", how="left")
             .join(nb.rename({"nir": "old_id", "bucket": "_ob"}), on="old_id", how="left")
             .with_columns(pl.when(pl.col("kind") == "ntt").then(pl.lit(0))
                           .otherwise(pl.col("_ob")).alias("src_bucket"))
             .select([pl.col(c).cast(t) for c, t in LINKS_SCHEMA.items()])
             .sort("kind", "old_id"))

    cc = resolve_nir(scan_table(root_dir, "contract_changes")
                     .filter(pl.col("nir").is_not_null()
                             & (pl.col("old_siret").is_not_null()
                                | pl.col("old_contract_no").is_not_null()))
                     .join(current, on="decl_id", how="semi")
                     .select("nir", "siret", "contract_no", "old_siret", "old_contract_no")
                     .collect())
    old_key = pl.concat_str([pl.col("nir"),
                             pl.coalesce("old_siret", "siret").fill_null(KEY_NULL),
                             pl.coalesce("old_contract_no", "contract_no").fill_null(KEY_NULL)],
                            separator=KEY_SEP)
    c_resolved, c_conflicts = resolve_chains(
        cc.select(old_key.alias("old"), packed_contract_key().alias("new")))
    readable = lambda e: e.str.replace_all(KEY_SEP, "/", literal=True)  # noqa: E731
    return Identity(
        links=links,
        conflicts=nir_conflicts.select(pl.col("key").alias("nir"), "detail"),
        contract_links=c_resolved.select(pl.col("old").alias("_ck"),
                                         pl.col("final").alias("_ck_new")),
        contract_conflicts=c_conflicts.select(
            pl.col("key").str.split(KEY_SEP).list.first().alias("nir"),
            readable(pl.format("contract {}: {}", "key", "detail")).alias("detail")))


def linked_rows(links: pl.DataFrame) -> pl.Expr:
    """Row filter: rows declared under one of the old identities of ``links``."""
    nirs = links.filter(pl.col("kind") == "nir")["old_id"]
    ntts = links.filter(pl.col("kind") == "ntt")["old_id"]
    return (pl.col("nir").is_in(nirs.implode())
            | (pl.col("nir").is_null() & pl.col("ntt").is_in(ntts.implode()))).fill_null(False)


def current_nir(links: pl.DataFrame) -> pl.Expr:
    """The NIR a row counts for: an old NIR becomes its current NIR, an NTT-only row takes
    the NIR its NTT is linked to (null when unlinked)."""
    nir_l = links.filter(pl.col("kind") == "nir")
    ntt_l = links.filter(pl.col("kind") == "ntt")
    out = pl.col("nir")
    if nir_l.height:
        out = out.replace(nir_l["old_id"], nir_l["linked_nir"])
    if ntt_l.height:
        out = pl.coalesce(out, pl.col("ntt").replace_strict(
            ntt_l["old_id"], ntt_l["linked_nir"], default=None, return_dtype=pl.String))
    return out.alias("nir")


def apply_identity_links(root_dir: Path | str, table: str, lf: pl.LazyFrame,
                         links: pl.DataFrame, buckets: list[int] | None) -> pl.LazyFrame:
    """Rows of old identities (NTT-only, old NIR) count for their current NIR. A bucket run
    reads them from their own bucket (``src_bucket``) when the current NIR's bucket is one of
    ``buckets`` (and only then); the run of their own bucket leaves them out."""
    if buckets is not None:
        run = {int(b) for b in buckets}
        wanted = links.filter(pl.col("link_bucket").is_in(sorted(run)))
        extra = sorted(set(wanted["src_bucket"].drop_nulls().to_list()) - run)
        if extra:
            lf = pl.concat([lf, scan_table(root_dir, table, extra).filter(linked_rows(wanted))])
        lf = lf.filter(~linked_rows(links) | linked_rows(wanted))
    return lf.with_columns(current_nir(links))
