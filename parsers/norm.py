"""Per-version DSN norm dictionaries (rubrique formats, enumerations, block tree).

The DSN norm changes every January (P24V01, P25V01, P26V01 …) but rubrique ids are never
reused, so one parser serves several years when driven by per-version dictionaries chosen
from ``S10.G00.00.006``. The dictionaries are small CSV files shipped in ``parsers/norm/``
(rebuilt by ``python -m parsers.norm_build``) and loaded lazily at first use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import polars as pl

from parsers import codes

NORM_DIR = Path(__file__).parent / "norm"
KNOWN_VERSIONS = ("P24V01", "P25V01", "P26V01")
_VERSION_RE = re.compile(r"^P(\d{2})V(\d{2})$")
RUBRIQUE_SCHEMA = {"rubrique": pl.String, "type": pl.String, "len_min": pl.Int32,
                   "len_max": pl.Int32, "regexp": pl.String}


@dataclass(frozen=True)
class Norm:
    """One norm version's dictionaries. ``version`` is the dictionary actually used."""

    version: str
    requested: str
    rubriques: pl.DataFrame  # rubrique, type (X/N/D), len_min, len_max, regexp
    enumerations: pl.DataFrame  # rubrique, code

    @property
    def exact(self) -> bool:
        return self.version == self.requested


def nearest_version(requested: str | None) -> str:
    """The known dictionary closest to ``requested`` (same year first, else nearest year, ties
    going to the newer norm); unparsable or missing versions get the newest known norm."""
    if requested in KNOWN_VERSIONS:
        return requested  # type: ignore[return-value]
    match = _VERSION_RE.match(requested or "")
    if not match:
        return KNOWN_VERSIONS[-1]
    wanted = int(match.group(1)) * 100 + int(match.group(2))

    def distance(v: str) -> tuple[int, int]:
        m = _VERSION_RE.match(v)
        assert m
        return (abs(int(m.group(1)) * 100 + int(m.group(2)) - wanted), -int(m.group(1)))

    return min(KNOWN_VERSIONS, key=distance)


@lru_cache(maxsize=None)
def load_norm(version: str) -> Norm:
    """Dictionaries for ``version`` (an unknown version gets the nearest known one)."""
    used = nearest_version(version)
    rub = pl.read_csv(NORM_DIR / f"rubriques_{used}.csv", schema=RUBRIQUE_SCHEMA)
    enums = pl.read_csv(NORM_DIR / f"enumerations_{used}.csv", infer_schema=False)
    return Norm(version=used, requested=version, rubriques=rub, enumerations=enums)


@lru_cache(maxsize=None)
def block_parents() -> dict[str, str | None]:
    """Official block tree (Blocks sheet ParentId): block id -> parent block id."""
    df = pl.read_csv(NORM_DIR / "blocks.csv", infer_schema=False)
    return dict(zip(df["block"].to_list(), df["parent"].to_list()))


def descendants_or_self(block: str) -> frozenset[str]:
    """All blocks whose ancestor chain contains ``block`` (and ``block`` itself)."""
    parents = block_parents()
    out = set()
    for b in parents:
        cur: str | None = b
        while cur is not None:
            if cur == block:
                out.add(b)
                break
            cur = parents.get(cur)
    return frozenset(out)


@lru_cache(maxsize=None)
def validation_table() -> pl.DataFrame:
    """All versions' rubriques (plus the lot envelope) with what the validator needs.

    Columns: norm_version, rubrique, type, len_min, len_max, regexp_anchored, strict, is_enum.
    """
    frames = []
    for version in KNOWN_VERSIONS:
        norm = load_norm(version)
        enum_rubs = norm.enumerations["rubrique"].unique()
        frames.append(norm.rubriques.with_columns(
            pl.lit(version).alias("norm_version"),
            pl.col("rubrique").is_in(enum_rubs.implode()).alias("is_enum"),
        ))
    envelope = pl.read_csv(NORM_DIR / f"rubriques_{codes.ENVELOPE_NORM}.csv", schema=RUBRIQUE_SCHEMA)
    frames.append(envelope.with_columns(pl.lit(codes.ENVELOPE_NORM).alias("norm_version"),
                                        pl.lit(False).alias("is_enum")))
    table = pl.concat(frames, how="vertical")
    strict = pl.col("rubrique").str.slice(0, codes.BLOCK_ID_WIDTH).is_in(list(codes.STRICT_BLOCKS))
    return table.select(
        "norm_version", "rubrique", "type", "len_min", "len_max",
        pl.when(strict & pl.col("regexp").is_not_null())
        .then(pl.lit("^(?:") + pl.col("regexp") + pl.lit(")$")).alias("regexp_anchored"),
        strict.alias("strict"),
        # the version rubrique is checked against the dictionaries, not its own enumeration
        (pl.col("is_enum") & (pl.col("rubrique") != codes.ENVOI_NORM_VERSION)).alias("is_enum"),
    )


@lru_cache(maxsize=None)
def enumeration_table() -> pl.DataFrame:
    """norm_version, rubrique, code for every enumerated rubrique of every known version."""
    return pl.concat([
        load_norm(v).enumerations.with_columns(pl.lit(v).alias("norm_version"))
        for v in KNOWN_VERSIONS
    ]).select("norm_version", "rubrique", "code").unique()


@lru_cache(maxsize=None)
def rubrique_ids() -> tuple[str, ...]:
    """Every rubrique id of every known version and of the lot envelope (sorted, unique)."""
    ids = validation_table().get_column("rubrique").unique().sort()
    return tuple(ids.filter(ids.str.contains(codes.RUBRIQUE_ID_PATTERN)).to_list())


@lru_cache(maxsize=None)
def rubrique_enum() -> pl.Enum:
    """``pl.Enum`` of ``rubrique_ids()``: casting to it is a hash lookup (unknown -> null)."""
    return pl.Enum(list(rubrique_ids()))
