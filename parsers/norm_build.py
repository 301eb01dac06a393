"""Rebuild the compact norm dictionaries shipped in ``parsers/norm/`` from ``/work/shared/dsn_norm``.

Why: the package must not depend on ``../shared`` at run time, so the few facts the parser
needs (block tree, per-version rubrique formats, enumerations) are extracted once into small
CSV files that travel with the package (``[tool.setuptools.package-data] parsers = ["norm/*"]``).

Sources (see ``parsers/norm/ORIGIN.md``):
- block tree: official ``dsn-datatypes-CT2024`` Blocks sheet (ParentId);
- P24V01 rubriques: official datatypes (nature, regexp, min/max length, enumerated values);
- P25V01/P26V01 rubriques: open-neodes YAML conversions (type, max length) and their
  enumerations; the regexp and minimum length of a rubrique are taken from P24V01 when the
  rubrique exists there (rubrique ids are never redefined, CT2025 §3.2);
- lot envelope V01R02 (S05/S06/S96/S95): open-neodes ``norm-V01R02.yaml``.

Usage: ``python -m parsers.norm_build /work/shared/dsn_norm``
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import polars as pl
import yaml

OUT = Path(__file__).parent / "norm"
NATURE_TO_TYPE = {"Date": "D", "Numeric": "N"}  # anything else is alphanumeric "X"


def _p24(src: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    flat = pl.read_csv(src / "rubriques_P24V01_official_flat.csv", infer_schema=False)
    rub = flat.select(
        "rubrique",
        pl.col("nature").replace_strict(NATURE_TO_TYPE, default="X").alias("type"),
        pl.col("len_min").cast(pl.Int32),
        pl.col("len_max").cast(pl.Int32),
        "regexp",
    )
    enums = (
        flat.filter(pl.col("nature") == "Enumeration")
        .select("rubrique", pl.col("values").str.split(";").alias("v"))
        .explode("v")
        .select("rubrique", pl.col("v").str.split("=").list.first().alias("code"))
        .filter(pl.col("code").str.len_chars() > 0)
    )
    return rub, enums


def build(src: Path) -> None:
    OUT.mkdir(exist_ok=True)
    p24_rub, p24_enum = _p24(src)
    p24_rub.write_csv(OUT / "rubriques_P24V01.csv")
    p24_enum.write_csv(OUT / "enumerations_P24V01.csv")
    for version in ("P25V01", "P26V01"):
        on = pl.read_csv(src / f"rubriques_{version}_open-neodes_flat.csv", infer_schema=False)
        rub = on.select(
            "rubrique", "type", pl.col("length").cast(pl.Int32).alias("len_max")
        ).join(p24_rub.select("rubrique", "len_min", "regexp"), on="rubrique", how="left")
        rub = rub.with_columns(pl.col("len_min").fill_null(1)).select(
            "rubrique", "type", "len_min", "len_max", "regexp"
        )
        rub.write_csv(OUT / f"rubriques_{version}.csv")
        pl.read_csv(src / f"enumerations_{version}_open-neodes.csv", infer_schema=False).select(
            "rubrique", "code"
        ).write_csv(OUT / f"enumerations_{version}.csv")
    blocks = pl.read_csv(src / "official_dsn-datatypes-CT2024" / "Blocks.csv", infer_schema=False)
    roots = pl.DataFrame({"block": ["S10.G00.00", "S20.G00.05", "S90.G00.90"], "parent": [None] * 3},
                         schema={"block": pl.String, "parent": pl.String})
    pl.concat([blocks.select(pl.col("Id").alias("block"), pl.col("ParentId").alias("parent")), roots]
              ).filter(pl.col("block").str.starts_with("S")).unique("block", keep="first").sort("block").write_csv(OUT / "blocks.csv")
    envelope = yaml.safe_load((src / "open-neodes_yaml" / "norm-V01R02.yaml").read_text("utf-8"))
    rows = [
        {"rubrique": rid, "type": f["type"], "len_min": 1, "len_max": int(f["length"]), "regexp": None}
        for seg in envelope["segments"].values() for rid, f in seg["fields"].items()
    ]
    pl.DataFrame(rows, schema={"rubrique": pl.String, "type": pl.String, "len_min": pl.Int32,
                               "len_max": pl.Int32, "regexp": pl.String}
                 ).write_csv(OUT / "rubriques_V01R02.csv")
    shutil.copyfile(src / "open-neodes_yaml" / "LICENSE-Apache-2.0.txt", OUT / "LICENSE-Apache-2.0.txt")


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/dsn_norm"))
