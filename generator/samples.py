"""The committed sample set ``data/samples/``: twelve months of real DSN for four employers.

Why: every engineer (parser, crediting, ledger, CLI) needs the same small, readable, *real*
input that exercises each rule of ``cpf_rules.md`` and each trap of ``dsn_format.md``
(A&R, fractions, rappels, test envois, encodings, broken lines). The expected 2025 credit of
each person is computed here by hand (exact fractions, see ``EXPECTED``) and written to
``README.md`` and ``expected_credits.csv`` so tests can compare the pipeline with it.

Run ``python -m generator.samples data/samples``. Output is deterministic: no clock, no
randomness, fixed ordering — regenerating produces identical bytes.
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path

from generator.builder import (
    Activity,
    Contract,
    ContractEnd,
    Declaration,
    Line,
    Payment,
    Person,
    Remuneration,
    Suspension,
    WorkStoppage,
    envoi_lines,
    fmt_date,
    fmt_num,
    month_bounds,
    monthly_pay,
    with_totals,
)

YEAR = 2025
D = Decimal


# --------------------------------------------------------------------------------------
# Identifiers


def luhn_ok(digits: str) -> bool:
    """Luhn check used by INSEE for SIREN and SIRET (CT2025 key-checked SIREN)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def luhn_complete(prefix: str) -> str:
    """Append the digit that makes ``prefix`` + digit Luhn-valid."""
    for d in "0123456789":
        if luhn_ok(prefix + d):
            return prefix + d
    raise AssertionError("unreachable")


def make_nir(sex: int, birth: date, dept: str, commune: int, order: int) -> str:
    """13-character NIR ``SAAMMDDCCCNNN`` (no key, as declared in S21.G00.30.001)."""
    return f"{sex}{birth.year % 100:02d}{birth.month:02d}{dept}{commune:03d}{order:03d}"


@dataclass(frozen=True)
class Employer:
    """One establishment (SIRET) and how its files are written."""

    key: str
    siren: str
    nic: str
    name: str
    idcc: str
    apen: str
    encoding: str = "latin-1"
    newline: str = "\n"

    @property
    def siret(self) -> str:
        return self.siren + self.nic


def _employer(key: str, siren8: str, nic4: str, **kw) -> Employer:
    siren = luhn_complete(siren8)
    nic = luhn_complete(siren + nic4)[9:]  # SIRET (14 digits) Luhn-valid as well
    return Employer(key, siren, nic, **kw)


EMPLOYERS: dict[str, Employer] = {
    e.key: e
    for e in [
        _employer("E1", "73282932", "0001", name="ATELIERS DU RHONE", idcc="3248",
                  apen="2562B"),
        # Bakery written in windows-1252 with accented names (œ is not in Latin-1).
        _employer("E2", "41263504", "0002", name="BOULANGERIE DE L'ÉTOILE", idcc="0843",
                  apen="1071C", encoding="cp1252"),
        _employer("E3", "52011946", "0003", name="ESAT LES GLYCINES", idcc="0413",
                  apen="8810C"),
        # Consulting firm (Syntec, forfait jours) writing CR-LF line ends.
        _employer("E4", "83455210", "0004", name="CABINET CONSEIL AUVERGNE", idcc="1486",
                  apen="7022Z", newline="\r\n"),
    ]
}


# --------------------------------------------------------------------------------------
# People and their jobs (one job = one contract at one employer)


@dataclass
class PersonSpec:
    key: str
    nir: str | None
    last_name: str
    first_names: str
    birth: date
    birth_place: str
    ntt: str | None = None


@dataclass
class Job:
    """One contract and how each month of 2025 is paid and declared.

    Defaults: the contract's quotité is worked and paid every month it is active;
    ``worked``/``unpaid``/``gross`` override single months; ``stoppages``/``suspensions``
    list the blocks to repeat in the DSN of the given months (suspensions supra-mensuelles
    are repeated in every monthly DSN they span).
    """

    person: PersonSpec
    employer: str
    contract: Contract
    rate: Decimal  # hourly (or daily / monthly for non-hour units) gross rate
    end: ContractEnd | None = None
    worked: dict[int, Decimal | None] = field(default_factory=dict)
    unpaid: dict[int, Decimal] = field(default_factory=dict)
    gross: dict[int, Decimal] = field(default_factory=dict)
    activity_unit: str | None = None
    no_activity: bool = False  # forfait without Activité, or "sans notion" pay only
    monthly_gross: Decimal | None = None  # fixed monthly salary (forfaits, sans notion)
    stoppages: list[tuple[frozenset[int], WorkStoppage]] = field(default_factory=list)
    suspensions: list[tuple[frozenset[int], Suspension]] = field(default_factory=list)
    recalls: dict[int, list[tuple[int, Decimal, Decimal]]] = field(default_factory=dict)
    fractions: dict[int, str] = field(default_factory=dict)  # month -> "12" / "22"

    def active_in(self, month: int) -> bool:
        first, last = month_bounds(date(YEAR, month, 1))
        end = self.end.end_date if self.end else date(9999, 12, 31)
        return self.contract.start <= last and end >= first


def _p(key, sex, birth, dept, commune, order, last, first, place="LYON", ntt=None,
       nir=True) -> PersonSpec:
    return PersonSpec(key, make_nir(sex, birth, dept, commune, order) if nir else None,
                      last, first, birth, place, ntt)


PEOPLE: dict[str, PersonSpec] = {p.key: p for p in [
    _p("P01", 1, date(1980, 4, 12), "69", 123, 11, "MARTIN", "PAUL"),
    _p("P02", 2, date(1985, 7, 3), "69", 381, 42, "BERNARD", "SOPHIE"),
    _p("P03", 2, date(1972, 11, 21), "42", 218, 7, "THOMAS", "CLAIRE", "SAINT-ETIENNE"),
    _p("P04", 1, date(1999, 1, 30), "69", 123, 305, "PETIT", "LUCAS"),
    _p("P05", 1, date(2001, 9, 15), "38", 185, 96, "ROBERT", "HUGO", "GRENOBLE"),
    _p("P06", 2, date(1990, 2, 8), "75", 114, 333, "BŒUF", "CÉCILE", "PARIS"),
    _p("P07", 1, date(1978, 6, 25), "64", 445, 12, "D'ARTAGNAN", "CHARLES", "PAU"),
    _p("P08", 2, date(1983, 3, 14), "63", 113, 58, "DURAND", "MARIE", "CLERMONT-FERRAND"),
    _p("P09", 1, date(1975, 12, 1), "63", 113, 201, "LEROY", "NICOLAS", "CLERMONT-FERRAND"),
    _p("P10", 1, date(1968, 5, 19), "13", 55, 77, "MOREAU", "ALAIN", "MARSEILLE"),
    _p("P11", 2, date(1995, 8, 27), "63", 430, 19, "SIMON", "JULIE", "RIOM"),
    _p("P12", 2, date(1992, 10, 10), "69", 381, 150, "LAURENT", "EMMA"),
    _p("P13", 1, date(1988, 1, 5), "69", 266, 88, "LEFEBVRE", "THEO", "VILLEURBANNE"),
    _p("P14", 1, date(1987, 4, 22), "69", 123, 421, "MICHEL", "ANTOINE"),
    _p("P15", 2, date(1996, 12, 17), "75", 115, 240, "LEFÈVRE", "ÉLOÏSE", "PARIS"),
    _p("P16", 1, date(1970, 3, 9), "75", 117, 61, "FRANÇOIS", "JÉRÔME", "PARIS"),
    _p("P17", 1, date(1982, 8, 2), "26", 362, 14, "GARCIA", "MANUEL", "VALENCE"),
    _p("P18", 2, date(1994, 2, 11), "26", 362, 93, "ROUX", "LEA", "VALENCE"),
    _p("P19", 2, date(2000, 6, 6), "01", 53, 4, "FOURNIER", "CHLOE", "BOURG-EN-BRESSE"),
    _p("P20", 1, date(1998, 9, 23), "69", 123, 512, "GIRARD", "MAXIME"),
    _p("P21", 2, date(1965, 1, 28), "69", 123, 97, "BONNET", "NATHALIE"),
    _p("P22", 2, date(1988, 5, 4), "2A", 4, 123, "CŒURDEROY", "ANAÏS", "AJACCIO"),
    _p("P23", 1, date(1979, 10, 31), "63", 113, 317, "LAMBERT", "JULIEN", "CLERMONT-FERRAND"),
    _p("P24", 1, date(1993, 7, 7), "99", 1, 1, "OKONKWO", "CHIDI", "LAGOS", nir=False),
    _p("P25", 1, date(1974, 4, 4), "26", 198, 35, "FONTAINE", "BRUNO", "MONTELIMAR"),
    _p("P26", 1, date(1991, 11, 11), "26", 362, 207, "CHEVALIER", "KEVIN", "VALENCE"),
    _p("P27", 1, date(1997, 2, 14), "75", 118, 66, "GARÇON", "NOËL", "PARIS"),
    _p("P28", 2, date(1969, 9, 9), "26", 362, 401, "MERCIER", "ISABELLE", "VALENCE"),
    _p("P29", 1, date(1960, 12, 24), "63", 113, 450, "BLANC", "PHILIPPE", "CLERMONT-FERRAND"),
    _p("P30", 2, date(1984, 4, 30), "26", 362, 502, "GUERIN", "AMELIE", "VALENCE"),
]}
PEOPLE["P24"].ntt = "1" + EMPLOYERS["E3"].siren + "00024"

FULL = D("151.67")
HALF = D("75.84")  # 151.67 / 2, rounded to the cent as payroll software declares it
FORTY = D("60.67")  # 40 % of 151.67
THIRTY = D("45.50")  # 30 % of 151.67
FORFAIT_REF = D("18.17")  # 218 days / 12, rounded


def _months(a: int, b: int) -> frozenset[int]:
    return frozenset(range(a, b + 1))


def _hourly(number: str, start: date, quota: Decimal = FULL, **kw) -> Contract:
    modality = "10" if quota == FULL else "20"
    return Contract(number=number, start=start, quota=fmt_num(quota), modality=modality, **kw)


def _jobs() -> list[Job]:
    P = PEOPLE
    d = date
    jobs = [
        # E1 — Ateliers du Rhône (métallurgie, 151.67 h reference)
        Job(P["P01"], "E1", _hourly("A0001", d(2015, 3, 1), pcs="628A",
                                    job_title="TOURNEUR"), D("17.50")),
        Job(P["P02"], "E1", _hourly("A0002", d(2019, 9, 2), HALF), D("15.20")),
        Job(P["P03"], "E1", _hourly("A0003", d(2010, 1, 4), FORTY), D("16.00")),
        Job(P["P04"], "E1", _hourly("A0004", d(2025, 9, 1)), D("14.80")),
        Job(P["P05"], "E1", _hourly("A0005", d(2025, 1, 1), nature="02",
                                    planned_end=d(2025, 6, 30)), D("13.90"),
            end=ContractEnd(d(2025, 6, 30), "031", notice_type="90"),
            fractions={6: "22"}),
        Job(P["P07"], "E1", _hourly("A0007", d(2018, 5, 14), THIRTY), D("18.00")),
        Job(P["P12"], "E1", _hourly("A0012", d(2016, 2, 1)), D("16.40"),
            # Maternity, 16 weeks (112 days) from 1 March, salary kept by the employer
            # (subrogation): declared in each DSN it spans, resumption known in June.
            stoppages=[(_months(3, 5), WorkStoppage("02", d(2025, 2, 28), d(2025, 6, 20))),
                       (frozenset({6}), WorkStoppage("02", d(2025, 2, 28), d(2025, 6, 20),
                                                     resumption=d(2025, 6, 23)))]),
        Job(P["P13"], "E1", _hourly("A0013", d(2025, 7, 1)), D("15.00"),
            # Work accident on 30 Sept, off until mid-January 2026, unpaid by employer.
            stoppages=[(_months(10, 12), WorkStoppage("06", d(2025, 9, 30), d(2026, 1, 16),
                                                      accident_date=d(2025, 9, 30)))],
            worked={10: D("0"), 11: D("0"), 12: D("0")},
            unpaid={10: FULL, 11: FULL, 12: FULL},
            gross={10: D("0"), 11: D("0"), 12: D("0")}),
        Job(P["P14"], "E1", _hourly("A0014", d(2017, 6, 12)), D("19.30"),
            # Congé parental d'éducation from 1 March 2025 to 28 Feb 2026 (65.001 = 632).
            suspensions=[(_months(3, 12), Suspension("632", d(2025, 3, 1), d(2026, 2, 28)))],
            worked={m: D("0") for m in range(3, 13)},
            unpaid={m: FULL for m in range(3, 13)},
            gross={m: D("0") for m in range(3, 13)}),
        Job(P["P19"], "E1", _hourly("A0019", d(2025, 1, 1), HALF, nature="02",
                                    planned_end=d(2025, 6, 30)), D("13.50"),
            end=ContractEnd(d(2025, 6, 30), "031", notice_type="90"),
            fractions={6: "12"}),
        Job(P["P20"], "E1", _hourly("A0020", d(2025, 9, 16)), D("14.20"),
            worked={9: D("75.84")}),  # hired mid-September: half a month paid
        Job(P["P21"], "E1", _hourly("A0021", d(2008, 4, 1), FORTY), D("21.00"),
            # Rappel in the April DSN for February: +7 h paid, dated with Feb's period.
            recalls={4: [(2, D("7.00"), D("147.00"))]}),
        # E2 — Boulangerie de l'Étoile (cp1252 files, accented names)
        Job(P["P06"], "E2", _hourly("B-0006", d(2021, 3, 1), HALF), D("14.00"),
            end=ContractEnd(d(2025, 6, 15), "059", notice_type="01",
                            notice_start=d(2025, 5, 16), notice_end=d(2025, 6, 15)),
            worked={6: D("37.92")}),  # démission effective 15 June
        Job(P["P07"], "E2", _hourly("B-0007", d(2020, 1, 6), THIRTY), D("14.10")),
        Job(P["P15"], "E2", _hourly("B-0015", d(2025, 7, 1)), D("13.20"),
            # Ordinary sickness (01) from 1 Sept; < 1 year seniority ⇒ no salary upkeep.
            stoppages=[(_months(9, 12), WorkStoppage("01", d(2025, 8, 31), d(2026, 1, 31)))],
            worked={m: D("0") for m in range(9, 13)},
            unpaid={m: FULL for m in range(9, 13)},
            gross={m: D("0") for m in range(9, 13)}),
        Job(P["P16"], "E2", _hourly("B-0016", d(2012, 10, 1), HALF), D("13.80"),
            # Congé divers non rémunéré (501) June–August, time shown as Activité type 02.
            suspensions=[(_months(6, 8), Suspension("501", d(2025, 6, 1), d(2025, 8, 31)))],
            worked={6: D("0"), 7: D("0"), 8: D("0")},
            unpaid={6: HALF, 7: HALF, 8: HALF},
            gross={6: D("0"), 7: D("0"), 8: D("0")}),
        Job(P["P22"], "E2", _hourly("B-0022", d(2014, 8, 25)), D("13.60")),
        Job(P["P27"], "E2", _hourly("B-0027", d(2022, 4, 4)), D("12.90")),
        # E3 — ESAT Les Glycines (CCN 66)
        Job(P["P17"], "E3", _hourly("C0017", d(2011, 2, 1), boeth="01",
                                    pcs="526E"), D("14.60")),
        Job(P["P18"], "E3", _hourly("C0018", d(2023, 1, 2), HALF, nature="70",
                                    planned_end=d(2025, 12, 31), status="07", pcs="684A",
                                    job_title="TRAVAILLEUR ESAT"), D("11.88")),
        Job(P["P24"], "E3", _hourly("C0024", d(2024, 10, 1)), D("12.50")),
        Job(P["P25"], "E3", _hourly("C0025", d(2009, 5, 4)), D("15.90"),
            end=ContractEnd(d(2025, 5, 31), "043", notice_type="90"),
            # Work accident on 15 Dec 2024 (declared since the Dec 2024 DSN), resumption 1 March.
            stoppages=[(_months(1, 2), WorkStoppage("06", d(2024, 12, 15), d(2025, 2, 28),
                                                    accident_date=d(2024, 12, 15))),
                       (frozenset({3}), WorkStoppage("06", d(2024, 12, 15), d(2025, 2, 28),
                                                     resumption=d(2025, 3, 1),
                                                     accident_date=d(2024, 12, 15)))],
            worked={1: D("0"), 2: D("0")}, unpaid={1: FULL, 2: FULL},
            gross={1: D("0"), 2: D("0")}),
        Job(P["P26"], "E3", _hourly("C0026", d(2019, 1, 7)), D("12.40")),
        Job(P["P28"], "E3", _hourly("C0028", d(2001, 9, 3)), D("16.10")),
        Job(P["P30"], "E3", _hourly("C0030", d(2016, 11, 2), FORTY, boeth="08"), D("13.30")),
        # E4 — Cabinet conseil (Syntec, CR-LF files)
        Job(P["P08"], "E4", Contract("F0008", d(2025, 7, 1), unit="20", ref_quota=FORFAIT_REF,
                                     quota=FORFAIT_REF, status="04", retirement_status="01",
                                     pcs="388A", job_title="CONSULTANTE"), D("0"),
            monthly_gross=D("4200.00"),
            # Days worked, declared in the contract's unit (53.003 absent ⇒ 40.011 = 20).
            worked={7: D("15"), 8: D("10"), 9: D("19"), 10: D("20"), 11: D("18"),
                    12: D("18")}),
        Job(P["P09"], "E4", Contract("F0009", d(2025, 10, 1), unit="20", ref_quota=FORFAIT_REF,
                                     quota=FORFAIT_REF, status="04", retirement_status="01",
                                     pcs="374A", job_title="DIRECTEUR DE MISSION"), D("0"),
            monthly_gross=D("5600.00"), no_activity=True),
        Job(P["P10"], "E4", Contract("V0010", d(2020, 1, 2), unit="99", ref_quota="0.00",
                                     quota="0.00", modality="99", pcs="463A",
                                     job_title="COMMERCIAL A LA COMMISSION"), D("0"),
            monthly_gross=D("800.00"), no_activity=True),
        Job(P["P11"], "E4", Contract("V0011", d(2025, 1, 2), nature="02", unit="32",
                                     ref_quota="0.00", quota="0.00", modality="99",
                                     planned_end=d(2025, 12, 31), pcs="422E",
                                     job_title="FORMATRICE VACATAIRE"), D("0"),
            end=ContractEnd(d(2025, 12, 31), "031", notice_type="90"),
            monthly_gross=D("1000.00"), activity_unit="32",
            worked={m: D("8") for m in range(1, 13)}),  # 8 vacations a month
        Job(P["P23"], "E4", _hourly("H0023", d(2013, 3, 18), status="04",
                                    retirement_status="01", pcs="388A",
                                    job_title="INGENIEUR"), D("28.00")),
        Job(P["P29"], "E4", _hourly("H0029", d(1998, 6, 1), status="04",
                                    retirement_status="01", pcs="372C",
                                    job_title="ASSOCIE"), D("41.00")),
    ]
    return jobs


# --------------------------------------------------------------------------------------
# Declarations


def _money(x: Decimal) -> Decimal:
    return x.quantize(D("0.01"), rounding=ROUND_HALF_UP)


def _month_gross(job: Job, month: int, worked: Decimal | None) -> Decimal:
    if month in job.gross:
        return job.gross[month]
    if job.monthly_gross is not None:
        return job.monthly_gross
    return _money(job.rate * (worked if worked is not None else D(job.contract.quota)))


def _contract_for_month(job: Job, month: int) -> Contract:
    """The contract block as declared in month ``month``: children repeated as needed."""
    c = replace(job.contract, stoppages=[], suspensions=[], end=None,
                idcc=EMPLOYERS[job.employer].idcc)
    c.stoppages = [s for months, s in job.stoppages if month in months]
    c.suspensions = [s for months, s in job.suspensions if month in months]
    if job.end is not None and job.end.end_date.month == month and job.end.end_date.year == YEAR:
        c.end = job.end
    return c


def _person_month(job: Job, month: int) -> Person:
    """One person's S21.G00.30 subtree for one DSN month at one employer."""
    p = job.person
    contract = _contract_for_month(job, month)
    first, last = month_bounds(date(YEAR, month, 1))
    period = (max(first, contract.start), min(last, job.end.end_date) if job.end else last)
    worked = job.worked.get(month, None if job.no_activity else D(contract.quota))
    if job.no_activity:
        worked = None
    gross = _month_gross(job, month, worked)
    rems = monthly_pay(contract, date(YEAR, month, 1), fmt_num(gross),
                       fmt_num(worked) if worked is not None else None,
                       unit=job.activity_unit,
                       unpaid_absence=fmt_num(job.unpaid[month]) if month in job.unpaid else None,
                       period=period)
    total = gross
    for period_month, hours, amount in job.recalls.get(month, []):
        rf, rl = month_bounds(date(YEAR, period_month, 1))
        rems += [
            Remuneration(rf, rl, contract.number, "001", fmt_num(amount)),
            Remuneration(rf, rl, contract.number, "002", fmt_num(amount),
                         activities=[Activity(fmt_num(hours))]),
            Remuneration(rf, rl, contract.number, "003", fmt_num(amount)),
            Remuneration(rf, rl, contract.number, "010", fmt_num(amount)),
        ]
        total += amount
    net = _money(total * D("0.78"))
    pay = Payment(paid_on=last, net_taxable=fmt_num(net), net_paid=fmt_num(net),
                  remunerations=rems)
    return Person(nir=p.nir, last_name=p.last_name, first_names=p.first_names,
                  birth_date=fmt_date(p.birth), birth_place=p.birth_place, ntt=p.ntt,
                  employee_id=contract.number, contracts=[contract], payments=[pay])


@dataclass
class SampleFile:
    name: str
    lines: list[str]  # rendered lines without terminator
    encoding: str
    newline: str

    def payload(self) -> bytes:
        return "".join(ln + self.newline for ln in self.lines).encode(self.encoding)


@dataclass
class Defect:
    """A deliberately broken line, so tests can check the parser confines the damage."""

    file: str
    line_no: int
    rubrique: str
    defect: str
    allowed_block: tuple[int, int] | None = None  # lines the parser may drop with it


def _render(lines: list[Line], raw: set[int] = frozenset()) -> list[str]:
    """``rub,'val'`` per line; indices in ``raw`` are written without quotes (malformed)."""
    return [f"{r},{v}" if i in raw else f"{r},'{v}'" for i, (r, v) in enumerate(lines)]


def _file_name(e: Employer, month: int, fraction: str, suffix: str = "") -> str:
    return f"{e.siret}_{YEAR}{month:02d}_{fraction}{suffix}.dsn"


def build_samples() -> tuple[list[SampleFile], list[Defect]]:
    """All sample envois, in a fixed order, and the list of deliberate defects."""
    jobs = _jobs()
    files: list[SampleFile] = []
    defects: list[Defect] = []
    for e in EMPLOYERS.values():
        for month in range(1, 13):
            active = [j for j in jobs if j.employer == e.key and j.active_in(month)]
            fractions = sorted({j.fractions[month] for j in active if month in j.fractions})
            groups: list[tuple[str, list[Job]]]
            if fractions:
                groups = [("12", [j for j in active if j.fractions.get(month, "12") == "12"]),
                          ("22", [j for j in active if j.fractions.get(month) == "22"])]
            else:
                groups = [("11", active)]
            for fraction, group in groups:
                decl = Declaration(siren=e.siren, nic=e.nic, month=date(YEAR, month, 1),
                                   people=[_person_month(j, month) for j in group],
                                   fraction=fraction, company_name=e.name, idcc=e.idcc,
                                   apen=e.apen)
                if e.key == "E1" and month == 3:
                    files += _annule_et_remplace(e, decl, group, defects)
                    continue
                lines = envoi_lines(decl)
                name = _file_name(e, month, fraction)
                raw: set[int] = set()
                if e.key == "E2" and month == 10:
                    lines, raw, found = _break_e2_october(lines)
                    defects += [Defect(name, *f) for f in found]
                if e.key == "E3" and month == 11:
                    lines, found = _break_e3_november(lines)
                    defects += [Defect(name, *f) for f in found]
                files.append(SampleFile(name, _render(lines, raw), e.encoding, e.newline))
                if e.key == "E2" and month == 7:
                    files.append(_test_envoi(e))
    return files, defects


def _annule_et_remplace(e: Employer, fixed: Declaration, group: list[Job],
                        defects: list[Defect]) -> list[SampleFile]:
    """March at E1: v1 forgets P19's hours (0.00); v2 (type 03) replaces it with 75.84 h.

    v2 names v1 in S20.G00.05.006 = v1's .007 constitution date + .004 order number, and
    carries a higher order number, as CT2025 §1.4.3 requires.
    """
    v1 = replace(fixed, constitution_date=date(YEAR, 4, 1), order_no="1",
                 people=[_person_month(j, 3) for j in group])
    for person, job in zip(v1.people, group):
        if job.person.key == "P19":
            act = person.payments[0].remunerations[1].activities[0]
            act.measure = "0.00"
    v2 = replace(fixed, decl_type="03", order_no="2", constitution_date=date(YEAR, 4, 3),
                 replaced_id=v1.declaration_id)
    v1_lines, found = _orphan_remuneration(envoi_lines(v1), "P01", 3)
    defects.extend(Defect(_file_name(e, 3, "11"), *f) for f in found)
    return [SampleFile(_file_name(e, 3, "11"), _render(v1_lines), e.encoding, e.newline),
            SampleFile(_file_name(e, 3, "11", "_v2"), _render(envoi_lines(v2)), e.encoding,
                       e.newline)]


def _test_envoi(e: Employer) -> SampleFile:
    """A test envoi (S10.G00.00.005 = 01) for July claiming P06 worked full time: ignore it.

    P06 resigned on 15 June; if this file were used she would gain a full month.
    """
    job = next(j for j in _jobs() if j.person.key == "P06")
    job.end = None
    job.contract = replace(job.contract, quota=fmt_num(FULL), modality="10")
    decl = Declaration(siren=e.siren, nic=e.nic, month=date(YEAR, 7, 1), test=True,
                       people=[_person_month(job, 7)], company_name=e.name, idcc=e.idcc,
                       apen=e.apen)
    return SampleFile(_file_name(e, 7, "11", "_test"), _render(envoi_lines(decl)), e.encoding,
                      e.newline)


def _find(lines: list[Line], rub: str, after: int = 0, value: str | None = None) -> int:
    for i in range(after, len(lines)):
        if lines[i][0] == rub and (value is None or lines[i][1] == value):
            return i
    raise KeyError(rub)


def _person_start(lines: list[Line], nir: str) -> int:
    return _find(lines, "S21.G00.30.001", value=nir)


def _break_e2_october(lines: list[Line]) -> tuple[list[Line], set[int], list[tuple]]:
    """E2's October file: P22's locality line written without quotes (malformed line)."""
    lines = list(lines)
    i22 = _person_start(lines, PEOPLE["P22"].nir)
    loc = _find(lines, "S21.G00.30.010", after=i22)
    return lines, {loc}, [(loc + 1, "S21.G00.30.010", "malformed_line_without_quotes")]


def _orphan_remuneration(lines: list[Line], person: str, month: int
                         ) -> tuple[list[Line], list[tuple]]:
    """Insert, after ``person``'s last pay block, a Rémunération whose 51.010 names contract
    'ZZ-9999' that has no S21.G00.40.009 in the declaration (CCH-11 broken), 10 hours.

    Placed in the A&R'd v1 of E1's March on purpose: CCH controls are blocking, so a parser
    may quarantine just this block or reject the whole declaration; v1 is superseded by v2
    anyway, so the expected credits hold under both policies.
    """
    lines = list(lines[:-2])
    start = _person_start(lines, PEOPLE[person].nir)
    nxt = next((i for i in range(start + 1, len(lines)) if lines[i][0] == "S21.G00.30.001"),
               len(lines))
    last_rem = max(i for i in range(start, nxt) if lines[i][0].startswith("S21.G00.5"))
    first, last = month_bounds(date(YEAR, month, 1))
    orphan: list[Line] = [
        ("S21.G00.51.001", fmt_date(first)), ("S21.G00.51.002", fmt_date(last)),
        ("S21.G00.51.010", "ZZ-9999"), ("S21.G00.51.011", "002"), ("S21.G00.51.013", "136.00"),
        ("S21.G00.53.001", "01"), ("S21.G00.53.002", "10.00"),
    ]
    lines[last_rem + 1:last_rem + 1] = orphan
    o = last_rem + 1
    return with_totals(lines), [(o + 3, "S21.G00.51.010", "contract_no_without_40.009",
                                 (o + 1, o + len(orphan)))]


def _break_e3_november(lines: list[Line]) -> tuple[list[Line], list[tuple]]:
    """Two defects in E3's November file: an impossible date and an unknown code.

    1. P28's payment date S21.G00.50.001 = 31112025 (31 November does not exist).
    2. P26's S21.G00.30.013 (codification UE) = 09, not in the norm's list (01–04).
    """
    lines = list(lines)
    i28 = _person_start(lines, PEOPLE["P28"].nir)
    pay = _find(lines, "S21.G00.50.001", after=i28)
    lines[pay] = (lines[pay][0], "31112025")
    i26 = _person_start(lines, PEOPLE["P26"].nir)
    ue = _find(lines, "S21.G00.30.013", after=i26)
    lines[ue] = (lines[ue][0], "09")
    return lines, [(pay + 1, "S21.G00.50.001", "invalid_date"),
                   (ue + 1, "S21.G00.30.013", "unknown_enumeration_code")]


# --------------------------------------------------------------------------------------
# Expected 2025 credits, computed by hand (exact fractions) following cpf_rules.md


SMIC_2025 = D("11.88")
SANS_NOTION_REF = 2080 * SMIC_2025  # 24 710.40 €, SMIC unchanged during 2025
F = Fraction


def _h(x: str) -> Fraction:
    return F(D(x))


def _frac_hours(months: list[str], ref: str = "151.67") -> Fraction:
    """Σ counted/reference over months, divided by 12 (hour-based contracts)."""
    return sum((_h(m) / _h(ref) for m in months), F(0)) / 12


FORFAIT_MONTH_REF = min(_h("18.17"), F(218, 12))


@dataclass(frozen=True)
class Expected:
    person: str
    employers: str
    scenario: str
    ratio: Fraction | None  # None: no credit computed (no NIR)
    category: str  # standard | low_qualified | boeth | esat
    why: str
    balance_cents: int | None = None


def credit_cents(e: Expected) -> int | None:
    """Annual amount, prorated below ½ (except ESAT), rounded up to the cent, then ceiling."""
    if e.ratio is None:
        return None
    amount, ceiling = (50000, 500000) if e.category == "standard" else (80000, 800000)
    if e.category == "esat" or e.ratio >= F(1, 2):
        cents = amount
    else:
        value = amount * e.ratio
        cents = -((-value.numerator) // value.denominator)  # ceiling of an exact fraction
    if e.balance_cents is not None:
        cents = min(cents, max(0, ceiling - e.balance_cents))
    return cents


def _sans_notion(monthly_eur: str, months: int) -> Fraction:
    return F(D(monthly_eur) * months) / F(SANS_NOTION_REF)


EXPECTED: list[Expected] = [
    Expected("P01", "E1", "full time all year", _frac_hours(["151.67"] * 12), "standard",
             "ratio 1"),
    Expected("P02", "E1", "part time 50 % all year (75.84 h)", _frac_hours(["75.84"] * 12),
             "standard", "75.84/151.67 = 0.50003 ≥ ½ ⇒ full amount"),
    Expected("P03", "E1", "part time 40 % all year (60.67 h)", _frac_hours(["60.67"] * 12),
             "standard", "500 × 60.67/151.67 = 200.0066 → rounded up 200.01"),
    Expected("P04", "E1", "hired 1 Sept (CDI full time)", _frac_hours(["151.67"] * 4),
             "standard", "4/12 ⇒ 166.666… → 166.67"),
    Expected("P05", "E1", "CDD full time 1 Jan–30 Jun, end 62.002=031; June in fraction 22",
             _frac_hours(["151.67"] * 6), "standard",
             "exactly 6/12 = 0.5 ⇒ full amount (losing fraction 22: 5/12 ⇒ 208.34)"),
    Expected("P06", "E2", "50 % Jan–15 Jun, démission (059, préavis 63); cp1252 name BŒUF; "
             "a TEST envoi for July must be ignored",
             _frac_hours(["75.84"] * 5 + ["37.92"]), "standard",
             "(5×75.84 + 37.92)/1820.04 = 0.2292 ⇒ 114.60 (using the test file too: 156.26)"),
    Expected("P07", "E1 + E2", "two employers, 30 % + 30 % all year (D'ARTAGNAN, cp1252 at E2)",
             2 * _frac_hours(["45.50"] * 12), "standard", "2 × 45.50/151.67 = 0.59999 ≥ ½"),
    Expected("P08", "E4", "forfait jours (unit 20, ref 18.17) from 1 July, 100 days worked "
             "declared as Activité in days", sum((F(x) / FORFAIT_MONTH_REF
                                                  for x in (15, 10, 19, 20, 18, 18)), F(0)) / 12,
             "standard", "reference per month min(18.17, 218/12) ⇒ 100/218 ⇒ 229.357… → 229.36"),
    Expected("P09", "E4", "forfait jours from 1 Oct, no Activité ⇒ presence fallback",
             3 * _h("18.17") / FORFAIT_MONTH_REF / 12, "standard",
             "3 × 18.17/(218/12) / 12 = 0.250046 ⇒ 125.0229 → 125.03"),
    Expected("P10", "E4", "unit 99 'sans notion', pay only, 800 €/month",
             _sans_notion("800.00", 12), "standard",
             "9 600 / (2 080 × 11.88) = 0.3885 ⇒ 194.2502 → 194.26"),
    Expected("P11", "E4", "unit 32 (vacation) CDD 2 Jan–31 Dec, 1 000 €/month, 8 vacations "
             "in 53 unit 32", _sans_notion("1000.00", 12), "standard",
             "12 000 / 24 710.40 = 0.4856 ⇒ 242.8128 → 242.82"),
    Expected("P12", "E1", "maternity 60.001=02, 16 weeks from 1 March, salary kept; the arrêt "
             "is repeated in the March–June DSN", _frac_hours(["151.67"] * 12), "standard",
             "paid time already = quotité, absence adds nothing (no double count) ⇒ ratio 1"),
    Expected("P13", "E1", "hired 1 July; work accident (06, 60.012) from 1 Oct, unpaid",
             _frac_hours(["151.67"] * 6), "standard",
             "Oct–Dec counted as worked (L6323-12) ⇒ 0.5 ⇒ 500 (not counting it: 125.00)"),
    Expected("P14", "E1", "parental leave 65.001=632 from 1 March, unpaid",
             _frac_hours(["151.67"] * 12), "standard",
             "Mar–Dec counted ⇒ ratio 1 (not counting it: 83.34)"),
    Expected("P15", "E2", "hired 1 July; ordinary sickness (01) from 1 Sept, unpaid",
             _frac_hours(["151.67"] * 2), "standard",
             "sickness is not worked time ⇒ 2/12 ⇒ 83.34"),
    Expected("P16", "E2", "50 %, unpaid leave 65.001=501 June–Aug (Activité type 02)",
             _frac_hours(["75.84"] * 9), "standard",
             "9 × 75.84 / 1820.04 = 0.37502 ⇒ 187.5124 → 187.52"),
    Expected("P17", "E3", "BOETH (40.072=01), full time all year", F(1), "boeth",
             "BOETH ⇒ 800 €"),
    Expected("P18", "E3", "ESAT worker (40.007=70, 40.010 planned end), 50 %",
             _frac_hours(["75.84"] * 12), "esat", "ESAT ⇒ 800 € whatever the time"),
    Expected("P19", "E1", "CDD 50 % Jan–Jun; March declared twice: v1 with 0.00 h, then A&R "
             "(type 03, 05.006) with 75.84 h; June in fraction 12",
             _frac_hours(["75.84"] * 6), "standard",
             "6 × 75.84/1820.04 = 0.250016 ⇒ 125.0082 → 125.01 (v1 kept: 104.18; v1 + v2 summed: 145.85)"),
    Expected("P20", "E1", "hired 16 Sept (half of September paid)",
             _frac_hours(["75.84"] + ["151.67"] * 3), "standard",
             "(75.84 + 3×151.67)/1820.04 = 0.29167 ⇒ 145.8348 → 145.84"),
    Expected("P21", "E1", "40 % all year + rappel in the April DSN of +7 h for February",
             _frac_hours(["60.67"] * 11 + ["67.67"]), "standard",
             "(12×60.67 + 7)/1820.04 = 0.40386 ⇒ 201.9296 → 201.93 (without rappel 200.01)"),
    Expected("P22", "E2", "full time all year, born in Corsica (NIR dept 2A), name CŒURDEROY; "
             "her October line 30.010 is malformed", F(1), "standard", "ratio 1"),
    Expected("P23", "E4", "full time cadre all year (CR-LF file)", F(1), "standard", "ratio 1"),
    Expected("P24", "E3", "no NIR, NTT only (S21.G00.30.020)", None, "standard",
             "an NTT opens no rights: no credit, reported"),
    Expected("P25", "E3", "work accident since 16 Dec 2024 (spans the year boundary), resumption "
             "1 March; rupture conventionnelle 31 May (043)", _frac_hours(["151.67"] * 5),
             "standard", "Jan–Feb counted + Mar–May worked ⇒ 5/12 ⇒ 208.34 (not counting: 125)"),
    Expected("P26", "E3", "low-qualified (declared 2024), full time; Nov line 30.013 has a bad "
             "code", F(1), "low_qualified", "declared before 2025 ⇒ 800 €"),
    Expected("P27", "E2", "low-qualified declared in Feb 2026, full time", F(1), "standard",
             "a declaration made in 2026 first counts for 2026 ⇒ standard 500 €"),
    Expected("P28", "E3", "earned balance 4 800 €, full time; Nov payment date invalid", F(1),
             "standard", "min(500, 5 000 − 4 800) = 200", balance_cents=480000),
    Expected("P29", "E4", "earned balance 5 000 €, full time", F(1), "standard",
             "ceiling reached ⇒ 0", balance_cents=500000),
    Expected("P30", "E3", "BOETH (40.072=08), 40 % all year", _frac_hours(["60.67"] * 12),
             "boeth", "800 × 60.67/151.67 = 320.0105 → 320.02"),
]

HOLDERS = [("P26", "2024-03-12", ""), ("P27", "2026-02-10", "")]


def _euros(cents: int | None) -> str:
    return "—" if cents is None else f"{cents // 100}.{cents % 100:02d}"


def _csv(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode("utf-8")


def side_files(defects: list[Defect]) -> dict[str, bytes]:
    """holders.csv, balances.csv, expected_credits.csv, broken_lines.csv, README.md."""
    out: dict[str, bytes] = {}
    out["holders.csv"] = _csv([["nir", "low_qualified_declared_on", "low_qualified_withdrawn_on"]]
                              + [[PEOPLE[k].nir, a, b] for k, a, b in HOLDERS])
    out["balances.csv"] = _csv([["nir", "earned_balance_cents"]]
                               + [[PEOPLE[e.person].nir, str(e.balance_cents)]
                                  for e in EXPECTED if e.balance_cents is not None])
    rows = [["person", "nir", "ntt", "employers", "category", "ratio", "credit_cents"]]
    for e in EXPECTED:
        p = PEOPLE[e.person]
        ratio = "" if e.ratio is None else f"{float(e.ratio):.6f}"
        cents = credit_cents(e)
        rows.append([e.person, p.nir or "", p.ntt or "", e.employers.replace(" + ", "+"),
                     e.category, ratio, "" if cents is None else str(cents)])
    out["expected_credits.csv"] = _csv(rows)
    drows = [["file", "line_no", "rubrique", "defect", "block_first_line", "block_last_line"]]
    for d in defects:
        a, b = d.allowed_block or (d.line_no, d.line_no)
        drows.append([d.file, str(d.line_no), d.rubrique, d.defect, str(a), str(b)])
    out["broken_lines.csv"] = _csv(drows)
    out["README.md"] = _readme(defects).encode("utf-8")
    return out


def _readme(defects: list[Defect]) -> str:
    e_rows = "\n".join(
        f"| {e.key} | `{e.siret}` | {e.name} | IDCC {e.idcc} | {e.encoding}"
        f"{', CR-LF' if e.newline == chr(13) + chr(10) else ''} |"
        for e in EMPLOYERS.values())
    p_rows = "\n".join(
        f"| {e.person} | `{PEOPLE[e.person].nir or '(NTT ' + str(PEOPLE[e.person].ntt) + ')'}` "
        f"| {e.employers} | {e.scenario} | {e.category} | "
        f"{'—' if e.ratio is None else f'{float(e.ratio):.5f}'} | **{_euros(credit_cents(e))}** "
        f"| {e.why} |"
        for e in EXPECTED)
    d_rows = "\n".join(f"| `{d.file}` | {d.line_no} | `{d.rubrique}` | {d.defect} |"
                       for d in defects)
    return f"""# Sample DSN set — year {YEAR}

Generated by `python -m generator.samples data/samples` (`make samples`); **do not edit by
hand**. Regenerating produces identical bytes (a test checks it).

Real DSN mensuelles (norme P25V01, flat NEODeS lines) for four establishments, one file per
establishment × month × fraction, named `<siret>_<YYYYMM>_<fraction>[_v<n>|_test].dsn`.
SIREN and SIRET are Luhn-valid; NIRs are 13 characters `SAAMMDDCCCNNN` consistent with the
declared birth date (S21.G00.30.006).

| key | SIRET | name | convention | encoding |
|---|---|---|---|---|
{e_rows}

Traps on purpose:
- **Annule et remplace:** `{EMPLOYERS['E1'].siret}_202503_11.dsn` (type 01, order 1, built
  01/04/2025) is replaced by `…_202503_11_v2.dsn` (type 03, order 2, S20.G00.05.006 =
  `010420251`). Only v2 counts (it restores P19's March hours).
- **Fractions:** E1's June is declared as fractions `12` and `22` (people split between them).
- **Rappel:** E1's April DSN carries P21's +7 h / +147 € for February (51 period = February).
- **Test envoi:** `{EMPLOYERS['E2'].siret}_202507_11_test.dsn` has S10.G00.00.005 = `01`; it must be
  ignored.
- **Encodings:** E2 files are windows-1252 (É, È, Ç, Œ, Ï, Ô, apostrophe in D'ARTAGNAN and in
  the company name); E4 files use CR-LF line ends; the others are Latin-1 (ASCII content).
- **Absences** repeated in every monthly DSN they span (60 arrêts, 65 suspensions), one
  starting in December 2024 (P25).
- **Broken lines** (listed in `broken_lines.csv`; every other line must parse):

| file | line | rubrique | defect |
|---|---|---|---|
{d_rows}

Side inputs: `holders.csv` (low-qualified declarations: P26 declared in 2024 counts for 2025,
P27 declared in February 2026 does not) and `balances.csv` (earned balances in cents: P28
4 800 €, P29 5 000 €). `expected_credits.csv` is the table below in machine form.

## Expected 2025 credits (computed by hand, cpf_rules.md)

ratio = Σ over contracts and months of counted / monthly reference, / 12 (hours: reference
151.67 h; forfait jours: min(40.012, 218/12) days; "sans notion": pay / (2 080 × SMIC 11.88 €
= 24 710.40 €)). Qualifying absences (maternity, work accident, parental leave…) count as
worked time up to the contract's quotité. ratio ≥ 0.5 ⇒ full amount (500 €, or 800 € for
low-qualified / BOETH / ESAT); otherwise amount × ratio **rounded up to the cent**; ESAT is
never prorated; then ceiling: min(amount, max(0, ceiling − earned balance)).

| person | NIR | employer(s) | scenario | category | ratio | credit € | why |
|---|---|---|---|---|---|---|---|
{p_rows}
"""


def write_samples(out_dir: Path) -> list[Path]:
    """Write the whole sample set into ``out_dir`` (created if needed); return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files, defects = build_samples()
    written = []
    for f in files:
        path = out_dir / f.name
        path.write_bytes(f.payload())
        written.append(path)
    for name, payload in side_files(defects).items():
        path = out_dir / name
        path.write_bytes(payload)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "data/samples")
    paths = write_samples(out)
    print(f"wrote {len(paths)} files to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
