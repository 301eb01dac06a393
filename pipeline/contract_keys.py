"""Contract keys as integers (``worked_time``, INTEGER KEYS): the run's contract dictionary
(``cid``, ``pid``), the two 64-bit hashes every big table is mapped through, and the packed
(contract, month) and (contract, declaration) Int64 keys later joins and group-bys run on."""

from __future__ import annotations

import polars as pl

CONTRACT_KEY = ["nir", "siret", "contract_no"]
KEY_SHIFT = 1 << 32  # cm = cid · 2**32 + month (days since 1970, > 0); dk = cid · 2**32 + _drank
KEY_SEP = "\x1f"  # ASCII unit separator: never inside a DSN value (printable charset)
KEY_NULL = "\x1e"  # stands for a missing siret / contract number inside a key
KEY_HASH_SEEDS = (0x243F6A88, 0x85A308D3)  # two independent seeds: join hash, check hash
KEY_HASH_COLS = ["_h", "_h2"]


class KeyHashCollision(RuntimeError):
    """Two distinct contract keys of one run share their 64-bit join hash (never merged)."""


def packed_contract_key() -> pl.Expr:
    """(nir, siret, contract_no) as ONE string (identity links, conflict details). Exact: the
    separator never occurs in a value, and it sorts below every printable character, so the
    packed keys sort like the (nir, siret, contract_no) tuples."""
    return pl.concat_str([pl.col("nir"), pl.col("siret").fill_null(KEY_NULL),
                          pl.col("contract_no").fill_null(KEY_NULL)],
                         separator=KEY_SEP).alias("_ck")


def unpacked_contract_key(packed: str = "_ck") -> list[pl.Expr]:
    """The (nir, siret, contract_no) columns of a packed key (``packed_contract_key``)."""
    parts = pl.col(packed).str.split_exact(KEY_SEP, 2)
    null_if_marker = lambda e: pl.when(e == KEY_NULL).then(None).otherwise(e)  # noqa: E731
    return [parts.struct.field("field_0").alias("nir"),
            null_if_marker(parts.struct.field("field_1")).alias("siret"),
            null_if_marker(parts.struct.field("field_2")).alias("contract_no")]


def contract_key_hashes() -> list[pl.Expr]:
    """``_h`` (join hash) and ``_h2`` (check hash) of (nir, siret, contract_no): two 64-bit
    hashes of the same struct with independent seeds (a missing value is a marker, never equal
    to a declared one). Hashing three columns costs a fraction of building a packed string and
    joining on it; Polars' hash is stable within one version, and a run never compares hashes
    across processes of different versions (they live only inside one run)."""
    key = pl.struct(pl.col("nir").alias("n"), pl.col("siret").fill_null(KEY_NULL).alias("s"),
                    pl.col("contract_no").fill_null(KEY_NULL).alias("c"))
    return [key.hash(seed).alias(name) for seed, name in zip(KEY_HASH_SEEDS, KEY_HASH_COLS)]


def with_key_hashes(lf: pl.LazyFrame) -> pl.LazyFrame:
    """``lf`` with the key hashes (``contract_key_hashes``), unless it carries them already
    (the contracts: hashed once for the dictionary and the cid lookup)."""
    if set(KEY_HASH_COLS) <= set(lf.collect_schema().names()):
        return lf
    return lf.with_columns(contract_key_hashes())


def contract_link_hashes(clinks: pl.DataFrame) -> pl.DataFrame:
    """``Identity.contract_links`` (packed old key -> packed current key) as hashes: old
    ``_h``/``_h2`` -> ``_h_new``/``_h2_new``, with the current key's columns (the dictionary
    names a contract by its current key)."""
    old = clinks.select(unpacked_contract_key("_ck")).select(contract_key_hashes())
    new = clinks.select(unpacked_contract_key("_ck_new"))
    new = new.with_columns(new.select(contract_key_hashes())
                           .rename({"_h": "_h_new", "_h2": "_h2_new"}))
    return pl.concat([old, new], how="horizontal")


def current_contract_key(lf: pl.LazyFrame, clinks: pl.DataFrame | None,
                         drop_remapped: bool = False) -> pl.LazyFrame:
    """Rows declared under an OLD contract key (S21.G00.41.012 / .014, ``Identity.
    contract_links`` as ``contract_link_hashes``) take the contract's current key hashes, so
    both identities are one contract (``cid``) before any aggregation. ``drop_remapped`` drops
    those rows instead (a 62 end declared under the old identity is not the end of the
    continuing contract)."""
    if clinks is None or clinks.height == 0:
        return lf
    lf = lf.join(clinks.lazy().select("_h", pl.col("_h2").alias("_h2_old"), "_h_new",
                                      "_h2_new"), on="_h", how="left")
    remapped = (pl.col("_h2") == pl.col("_h2_old")).fill_null(False)
    if drop_remapped:
        lf = lf.filter(~remapped)
    else:
        lf = lf.with_columns(pl.when(remapped).then(pl.col("_h_new")).otherwise(pl.col("_h"))
                             .alias("_h"),
                             pl.when(remapped).then(pl.col("_h2_new")).otherwise(pl.col("_h2"))
                             .alias("_h2"))
    return lf.drop("_h2_old", "_h_new", "_h2_new")


def contract_dictionary(contracts: pl.DataFrame,
                        clinks: pl.DataFrame | None = None) -> pl.DataFrame:
    """The run's contracts: distinct (nir, siret, contract_no) of rows with a NIR — current
    keys only (``current_contract_key``; ``clinks`` from ``contract_link_hashes``) — sorted,
    numbered ``cid`` (0..n-1); ``pid`` numbers the NIRs in NIR order, ``siret_code`` and
    ``siren_code`` number establishments and employers (for distinct counts on integers).
    ``_h``/``_h2`` are the key's hashes (``contract_key_hashes``) the big tables join on.
    Distinct keys are found on the hashes (integers); raises ``KeyHashCollision`` when two
    distinct keys share ``_h``."""
    rows = with_key_hashes(contracts.lazy().filter(pl.col("nir").is_not_null())
                           .select(*CONTRACT_KEY, *[c for c in KEY_HASH_COLS
                                                    if c in contracts.columns])).collect()
    named = (rows.lazy().with_row_index("_i")
             .group_by("_h").agg(pl.col("_i").min(), pl.col("_h2").min(),
                                 (pl.col("_h2").min() != pl.col("_h2").max()).alias("_clash"))
             .collect())
    if named["_clash"].any():
        raise KeyHashCollision("two distinct contract keys share a 64-bit key hash")
    keys = rows.select(CONTRACT_KEY)[named["_i"]].with_columns(named["_h"], named["_h2"])
    if clinks is not None and clinks.height:  # old keys leave, their current keys come in
        targets = (clinks.join(keys.select(KEY_HASH_COLS), on=KEY_HASH_COLS, how="semi")
                   .select(*CONTRACT_KEY, pl.col("_h_new").alias("_h"),
                           pl.col("_h2_new").alias("_h2")))
        keys = pl.concat([keys.join(clinks.select(KEY_HASH_COLS), on=KEY_HASH_COLS, how="anti"),
                          targets]).unique()
        if keys["_h"].n_unique() != keys.height:
            raise KeyHashCollision("a current contract key shares a 64-bit key hash")
    return (keys.sort(CONTRACT_KEY, nulls_last=False)
            .with_row_index("cid")
            .with_columns(
                pl.col("cid").cast(pl.Int64),
                ((pl.col("nir") != pl.col("nir").shift(1)).fill_null(True).cum_sum() - 1)
                .cast(pl.Int64).alias("pid"),
                distinct_code(pl.col("siret")).alias("siret_code"),
                distinct_code(pl.col("siret").str.slice(0, 9)).alias("siren_code")))


def distinct_code(e: pl.Expr) -> pl.Expr:
    """An integer standing for each distinct string value (null stays null), for distinct
    counts on integers: a categorical code (no sort, unlike a rank)."""
    return e.cast(pl.Categorical).to_physical().cast(pl.Int64)


def with_cid(lf: pl.LazyFrame | pl.DataFrame, keys: pl.DataFrame,
             clinks: pl.DataFrame | None = None, drop_remapped: bool = False) -> pl.LazyFrame:
    """Rows with a known contract key get their ``cid``: old keys mapped to current ones
    first (``current_contract_key``), then ``_h`` looked up in the dictionary, kept only where
    ``_h2`` agrees (a key absent from the run's contract versions has no attributes, so it can
    never be worked time); the string key columns are dropped. Only the hash column goes
    through the join, and its ``cid`` is added to the rows: a join of the whole table would
    re-gather every column."""
    rows = current_contract_key(with_key_hashes(lf.lazy().filter(pl.col("nir").is_not_null())),
                                clinks, drop_remapped).collect()
    # the join of the hash column alone (keys' _h are unique: one match at most), in row
    # order: ~3x cheaper than a replace_strict lookup, measured
    cid = (rows.lazy().select("_h").join(keys.lazy().select("_h", "cid"), on="_h", how="left",
                                         maintain_order="left").collect().get_column("cid"))
    return (rows.with_columns(cid).lazy()
            .filter(pl.lit(keys["_h2"]).gather(pl.col("cid")) == pl.col("_h2"))
            .drop(*CONTRACT_KEY, *KEY_HASH_COLS))


def of_contract(keys: pl.DataFrame, col: str) -> pl.Expr:
    """A ``contract_dictionary`` column for each row's ``cid``: a gather (row i of the
    dictionary is cid i), cheaper than a join on cid."""
    return pl.lit(keys[col]).gather(pl.col("cid")).alias(col)


def by_contract(rows: pl.DataFrame, col: str, n_contracts: int) -> pl.Expr:
    """``col`` of ``rows`` (at most one row per ``cid``) for each row's ``cid``, null where
    ``rows`` has none: a gather on a dense per-contract array, cheaper than a left join."""
    dense = pl.Series(col, [], dtype=rows.schema[col]).extend_constant(None, n_contracts)
    if rows.height:
        dense = dense.scatter(rows["cid"], rows[col])
    return pl.lit(dense).gather(pl.col("cid")).alias(col)


def cm_key(month: str | pl.Expr = "month") -> pl.Expr:
    """(cid, month) packed in one Int64: ``cid · 2**32 + days since 1970``."""
    m = pl.col(month) if isinstance(month, str) else month
    return pl.col("cid") * KEY_SHIFT + m.cast(pl.Int32).cast(pl.Int64)


def cm_cid() -> pl.Expr:
    return pl.col("cm") // KEY_SHIFT


def cm_month() -> pl.Expr:
    return (pl.col("cm") % KEY_SHIFT).cast(pl.Int32).cast(pl.Date)


def dk_key() -> pl.Expr:
    """(cid, declaration) packed in one Int64: ``cid · 2**32 + _drank``."""
    return pl.col("cid") * KEY_SHIFT + pl.col("_drank")
