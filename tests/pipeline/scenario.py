"""Thin scenario layer: a compact, lawyer-readable person description (cases.yaml) -> real DSN
envois (generator.builder) -> lake (the real parser) -> ready for pipeline.credits.

Month keys: "1-12", "3", or "YYYY-MM" (another year). Quantities in the contract's unit, or in
``activity_unit`` (53.003 on the Activité lines) when a contract gives one (a sans-notion
contract declares Activité lines only then, in the months of ``worked``).
``nir_from_month: M`` (with ``ntt``): the months before M are declared under the NTT alone,
M and later carry both the NIR and the NTT (the DSN that links the NTT to the NIR).

Identity changes (dsn_format.md §1.5), on the case or on one contract:
``old_nir: X, nir_change_month: M``: months before M are declared under NIR X; month M
declares the current NIR with an S21.G00.31 block (31.001 = 1st of M, 31.008 = X).
``undeclared: [M, …]`` on a contract: those months' DSN never carry it (an establishment
that did not file, or filed without the contract).
``renumbered: {month: M, old_number: X}`` / ``transferred: {month: M, old_siret: S}``: the
contract is declared as number X / at establishment S before M; month M carries an
S21.G00.41 block (41.001 = 1st of M, 41.014 = X / 41.012 = S).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl

from generator.builder import (Contract, ContractChange, ContractEnd, Declaration,
                               IndividualChange, Person, Remuneration, Suspension, WorkStoppage,
                               Activity, month_bounds, monthly_pay, payment_for, write_envoi)

DEFAULT_NIR = "1850175123456"
DEFAULT_SIRET = "12345678200017"
SANS_NOTION = {"31", "32", "33", "34", "35", "99"}


def _d(x) -> date:
    return x if isinstance(x, date) else date.fromisoformat(str(x))


def expand_months(spec: dict | None, year: int) -> dict[date, object]:
    out: dict[date, object] = {}
    for key, val in (spec or {}).items():
        key = str(key)
        if len(key) == 7 and key[4] == "-":
            out[date(int(key[:4]), int(key[5:]), 1)] = val
            continue
        lo, _, hi = key.partition("-")
        for m in range(int(lo), int(hi or lo) + 1):
            out[date(year, m, 1)] = val
    return out


def _active(c: dict, month: date) -> bool:
    first, last = month_bounds(month)
    return _d(c["start"]) <= last and (c.get("end") is None or _d(c["end"]) >= first)


def build_declarations(case: dict) -> list[Declaration]:
    year = int(case["year"])
    nir = case.get("nir", DEFAULT_NIR)
    decls: dict[tuple[str, date], Declaration] = {}
    contracts = case["contracts"]
    for i, c in enumerate(contracts):
        c.setdefault("number", f"CTR{i + 1:03d}")
        c.setdefault("siret", DEFAULT_SIRET)

    nir_from = case.get("nir_from_month")  # earlier months: NTT only (NIR not yet known)

    def change_month(spec: dict | None, key: str = "month") -> date | None:
        return date(year, int(spec[key]), 1) if spec else None

    def declared_nir(c: dict, month: date) -> tuple[str | None, IndividualChange | None]:
        """The NIR declared in ``month`` for contract ``c``'s person, and its 31 block."""
        current = c.get("nir", nir)
        known = nir_from is None or month >= date(year, int(nir_from), 1)
        old = c.get("old_nir", case.get("old_nir"))
        at = change_month(c if "old_nir" in c else case, "nir_change_month") if old else None
        if at is None or month > at:
            return (current if known else None), None
        if month < at:
            return old, None
        return current, IndividualChange(at, old_nir=old)

    def declared_contract(c: dict, month: date) -> tuple[str, str, ContractChange | None]:
        """(siret, number) declared in ``month`` for contract ``c``, and its 41 block."""
        siret, number, change = c["siret"], c["number"], None
        for spec, field in ((c.get("renumbered"), "old_number"), (c.get("transferred"), "old_siret")):
            at = change_month(spec)
            if at is None:
                continue
            if month < at:
                siret, number = ((siret, spec["old_number"]) if field == "old_number"
                                 else (spec["old_siret"], number))
            elif month == at:
                change = change or ContractChange(at)
                setattr(change, field, spec[field])
        return siret, number, change

    def person(d: Declaration, c: dict, month: date) -> Person:
        who, change = declared_nir(c, month)
        for p in d.people:
            if p.nir == who:
                break
        else:
            p = Person(nir=who, last_name="DUPONT", first_names="MARIE",
                       birth_date=str(case.get("birth_date", "01011985")), ntt=case.get("ntt"))
            d.people.append(p)
        if change is not None and not p.changes:
            p.changes.append(change)
        return p

    def decl(siret: str, month: date) -> Declaration:
        key = (siret, month)
        if key not in decls:
            decls[key] = Declaration(siren=siret[:9], nic=siret[9:], month=month)
        return decls[key]

    for c in contracts:
        worked = expand_months(c.get("worked"), year)
        remun = expand_months(c.get("remuneration"), year)
        skipped = {date(year, int(m), 1) for m in c.get("undeclared", [])}  # DSN never filed
        months = sorted(({date(year, m, 1) for m in range(1, 13) if _active(c, date(year, m, 1))}
                         | set(worked) | set(remun)) - skipped)
        for month in months:
            siret, number, cchange = declared_contract(c, month)
            d = decl(siret, month)
            p = person(d, c, month)
            first, last = month_bounds(month)
            con = Contract(number=number, start=_d(c["start"]), nature=c.get("nature", "01"),
                           unit=str(c.get("unit", "10")), ref_quota=str(c.get("reference", "151.67")),
                           quota=str(c.get("quota", c.get("reference", "151.67"))),
                           modality=c.get("modality", "10"), boeth=c.get("boeth"),
                           policy=str(c.get("policy", "99")),
                           employment_status=c.get("employment_status"),
                           planned_end=_d(c["planned_end"]) if c.get("planned_end") else
                           (_d(c["end"]) if c.get("end") and c.get("nature", "01") in ("02", "70")
                            else (date(year + 5, 12, 31) if c.get("nature") in ("02", "70") else None)))
            if cchange is not None:
                con.changes.append(cchange)
            if c.get("end") and first <= _d(c["end"]) <= last:
                con.end = ContractEnd(_d(c["end"]))
            for a in c.get("absences", []):
                dm = [date(year, int(m), 1) if not isinstance(m, str) or "-" not in m
                      else date(int(m[:4]), int(m[5:]), 1) for m in a.get("declared_in", [])]
                if month in dm:
                    if a.get("kind", "stoppage") == "stoppage":
                        con.stoppages.append(WorkStoppage(
                            str(a["motif"]), _d(a["last_worked_day"]), _d(a["planned_end"]),
                            _d(a["resumption"]) if a.get("resumption") else None,
                            accident_date=_d(a["last_worked_day"]) if str(a["motif"]) in ("04", "05", "06") else None))
                    else:
                        con.suspensions.append(Suspension(str(a["motif"]), _d(a["start"]), _d(a["end"])))
            p.contracts.append(con)
            w = worked.get(month)
            gross = remun.get(month, 2000)
            if con.unit in SANS_NOTION and (w is None or not c.get("activity_unit")):
                rems = [Remuneration(max(first, con.start), last, con.number, t, gross)
                        for t in ("001", "002", "003", "010")]
            else:
                rems = monthly_pay(con, month, gross, w, unit=c.get("activity_unit"))  # 53.003
            p.payments.append(payment_for(month, rems, gross))
        for r in c.get("recalls", []):  # a later DSN carries a past period's signed difference
            dm = _d(str(r["declared_in"]) + "-01")
            per = _d(str(r["period"]) + "-01")
            siret, number, _ = declared_contract(c, dm)
            d = decl(siret, dm)
            p = person(d, c, dm)
            if not any(x.number == number for x in p.contracts):
                p.contracts.append(Contract(number=number, start=_d(c["start"]),
                                            unit=str(c.get("unit", "10")),
                                            ref_quota=str(c.get("reference", "151.67")),
                                            quota=str(c.get("quota", c.get("reference", "151.67")))))
            pf, pl_ = month_bounds(per)
            rems = [Remuneration(pf, pl_, number, t, r.get("amount", 100),
                                 activities=[Activity(str(r["hours"]))] if t == "002" else [])
                    for t in ("001", "002", "003", "010")]
            p.payments.append(payment_for(dm, rems, r.get("amount", 100)))
    out = sorted(decls.values(), key=lambda d: (d.siren + d.nic, d.month))
    # annule-et-remplace: a later version of a month with changed contract data
    for am in case.get("amend", []):
        c = contracts[am.get("contract", 0)]
        month = date(year, int(am["month"]), 1)
        orig = decls[(c["siret"], month)]
        new = build_declarations({**case, "amend": [], "contracts": [
            {**c, "quota": am.get("quota", c.get("quota")),
             "worked": {str(am["month"]): am.get("worked")}, "absences": [],
             "start": c["start"], "end": c.get("end")}]})
        repl = [d for d in new if d.month == month][0]
        repl.decl_type, repl.order_no = "03", "2"
        repl.replaced_id = orig.declaration_id
        repl.constitution_date = orig.file_date + timedelta(days=10)
        out.append(repl)
    return out


def ingest_case(case: dict, root: Path) -> None:
    """Write the case's envois as DSN files and load them into ``root``'s lake."""
    dsn_dir = root / "dsn"
    dsn_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, d in enumerate(build_declarations(case)):
        path = dsn_dir / f"{i:03d}_{d.siren}{d.nic}_{d.month:%Y%m}_{d.order_no}.dsn"
        write_envoi(d, path)
        paths.append(path)
    try:
        from parsers.ingest import ingest_paths  # type: ignore
    except ImportError:
        ingest_paths = None
    if ingest_paths is not None:
        try:
            ingest_paths(paths, root)
            return
        except ModuleNotFoundError:  # ingestion still being assembled: parse directly
            import shutil
            shutil.rmtree(root / "lake", ignore_errors=True)
    from parsers.flat import SourceBytes, parse_flat_sources
    parsed = parse_flat_sources([SourceBytes.read(p) for p in paths])
    for table, df in parsed.tables.items():
        out = root / "lake" / table
        out.mkdir(parents=True, exist_ok=True)
        df.write_parquet(out / "part-0.parquet")


def write_inputs(case: dict, root: Path) -> tuple[Path | None, pl.DataFrame]:
    nir = case.get("nir", DEFAULT_NIR)
    holders = None
    if case.get("holder"):
        h = case["holder"]
        holders = root / "holders.csv"
        holders.write_text("nir,low_qualified_declared_on,low_qualified_withdrawn_on\n"
                           f"{h.get('nir', nir)},{h.get('low_qualified_declared_on', '')},"
                           f"{h.get('low_qualified_withdrawn_on', '') or ''}\n")
    bal = int(Decimal(str(case.get("balance", 0))) * 100)
    balances = pl.DataFrame({"nir": [nir], "earned_balance_cents": [bal]},
                            schema={"nir": pl.String, "earned_balance_cents": pl.Int64})
    return holders, balances
