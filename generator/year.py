"""Deterministic generator of a whole year of DSN mensuelles, at any volume.

Why: benchmarks and end-to-end tests need realistic *text* input in volume (ingestion is the
costly part of the product), with a known ground truth. ``generate_year`` plans every person's
jobs up front with one seeded ``random.Random`` (so the result depends only on the seed and
sizes, never on process scheduling), then writes one file per employer × month, in parallel
across employers. Text is produced from pre-rendered per-job fragments and one format
template per person-month — no per-line Python objects — so a couple of cores write well over
1 GB in a couple of minutes.

Each person-month carries the blocks a real payroll emits (≈ 190 lines): individu, contrat
with prévoyance (70) and retraite (71), versement with PAS data, the four mandatory
rémunérations (51 types 001/002/003/010) with activities (53, incl. the unit-40 calendar-day
line), an autre élément de revenu (54), bases assujetties (78) with composants (79) and
individual cotisations (81), and ancienneté (86). Each file adds the establishment's
adhésion prévoyance (15), versement OPS (20) and bordereau (22) with cotisations agrégées (23).
Codes come from the P25V01/P26V01 value lists.

The ground truth (``truth.parquet``, optional) is computed exactly from the plan, following
cpf_rules.md: per contract and month counted/monthly reference (qualifying absences topped up
to the quotité), summed, / 12.

CLI: ``python -m generator.year --out DIR --seed 1 --people 20000 --employers 200 --year 2025``
"""

from __future__ import annotations

import argparse
import calendar
import multiprocessing as mp
import os
import random
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction
from pathlib import Path

# --------------------------------------------------------------------------------------
# Parameters (cpf_rules.md §5) used by the truth computation

SMIC_CENTS = [  # SMIC horaire brut in cents, by date of effect
    (date(2019, 1, 1), 1003), (date(2020, 1, 1), 1015), (date(2021, 1, 1), 1025),
    (date(2021, 10, 1), 1048), (date(2022, 1, 1), 1057), (date(2022, 5, 1), 1085),
    (date(2022, 8, 1), 1107), (date(2023, 1, 1), 1127), (date(2023, 5, 1), 1152),
    (date(2024, 1, 1), 1165), (date(2024, 11, 1), 1188), (date(2025, 1, 1), 1188),
    (date(2026, 1, 1), 1202),
]
FULL_H = 15167  # 151.67 h, legal full time per month, in hundredths
FORFAIT_H = 1817  # 218 / 12 days, as declared
FORFAIT_REF = min(Fraction(FORFAIT_H), Fraction(21800, 12))
PMSS_CENTS = 392500  # plafond mensuel de la sécurité sociale 2025
QUALIFYING_60 = {"02", "03", "05", "06", "09"}
QUALIFYING_65 = {"607", "632", "650"}


def smic_cents(on: date) -> int:
    """SMIC horaire (cents) in force on ``on``."""
    value = SMIC_CENTS[0][1]
    for start, cents in SMIC_CENTS:
        if start <= on:
            value = cents
    return value


# --------------------------------------------------------------------------------------
# Small formatters (hot path: keep them trivial)


def m2(cents: int) -> str:
    """Hundredths → 'x.yy' (amounts, quantities), with a leading '-' when negative."""
    if cents < 0:
        return "-%d.%02d" % divmod(-cents, 100)
    return "%d.%02d" % divmod(cents, 100)


def d8(d: date) -> str:
    return f"{d.day:02d}{d.month:02d}{d.year}"


def rnd_div(a: int, b: int) -> int:
    """Round-half-up integer division of non-negative ints (payroll rounding)."""
    return (2 * a + b) // (2 * b)


def luhn_complete(prefix: str) -> str:
    for digit in "0123456789":
        s = prefix + digit
        total = 0
        for i, ch in enumerate(reversed(s)):
            n = int(ch) * (2 if i % 2 else 1)
            total += n - 9 if n > 9 else n
        if total % 10 == 0:
            return s
    raise AssertionError


# --------------------------------------------------------------------------------------
# Plan


@dataclass(slots=True)
class Absence:
    block: str  # "60" arrêt de travail | "65" autre suspension
    code: str  # 60.001 / 65.001
    start: date  # first day absent
    end: date  # last day absent (inclusive)
    paid: bool  # employer keeps paying (maintien de salaire / subrogation)

    @property
    def qualifying(self) -> bool:
        return self.code in (QUALIFYING_60 if self.block == "60" else QUALIFYING_65)


@dataclass(slots=True)
class JobPlan:
    employer: int
    contract_no: str
    start: date
    end: date | None
    end_reason: str
    nature: str  # 40.007
    planned_end: date | None  # 40.010
    unit: str  # 40.011: "10" hours, "20" forfait jours, "99" sans notion
    ref_h: int  # 40.012 hundredths
    quota_h: int  # 40.013 hundredths
    rate_cents: int  # hourly rate (unit 10) or monthly gross (20, 99)
    status: str
    boeth: str | None = None
    forfait_activity: bool = True
    absences: list[Absence] = field(default_factory=list)
    recall: tuple[int, int, int] | None = None  # (declared month, period month, hours_h)

    def days_in(self, year: int, month: int) -> tuple[int, int, date, date]:
        """(days under contract, days in month, first, last contract day) of a month."""
        dim = calendar.monthrange(year, month)[1]
        first = max(date(year, month, 1), self.start)
        last = date(year, month, dim)
        if self.end is not None and self.end < last:
            last = self.end
        return max(0, (last - first).days + 1), dim, first, last


@dataclass(slots=True)
class PersonPlan:
    idx: int
    nir: str | None
    ntt: str | None
    sex: int
    last_name: str
    first_names: str
    birth: date
    jobs: list[JobPlan]


@dataclass(slots=True)
class EmployerPlan:
    idx: int
    siren: str
    nic: str
    name: str
    idcc: str
    apen: str
    encoding: str
    newline: str

    @property
    def siret(self) -> str:
        return self.siren + self.nic


LAST_NAMES = ["MARTIN", "BERNARD", "DUBOIS", "THOMAS", "ROBERT", "RICHARD", "PETIT", "DURAND",
              "LEROY", "MOREAU", "SIMON", "LAURENT", "LEFEBVRE", "MICHEL", "GARCIA", "DAVID",
              "BERTRAND", "ROUX", "VINCENT", "FOURNIER", "MOREL", "GIRARD", "ANDRE", "MERCIER",
              "DUPONT", "LAMBERT", "BONNET", "FRANÇOIS", "MARTINEZ", "LEGRAND", "GARNIER",
              "FAURE", "ROUSSEAU", "BLANC", "GUÉRIN", "MULLER", "HENRY", "ROUSSEL", "NICOLAS",
              "PERRIN", "MORIN", "MATHIEU", "CLÉMENT", "GAUTHIER", "DUMONT", "LOPEZ", "FONTAINE",
              "CHEVALIER", "ROBIN", "D'ALMEIDA", "LEFÈVRE", "O'NEILL", "BÉNARD", "NGUYEN"]
LAST_NAMES_CP1252 = ["BŒUF", "CŒUR", "LŒWENBRÜCK", "SŒUR"]
FIRST_NAMES = {1: ["JEAN", "PIERRE", "LUCAS", "HUGO", "LOUIS", "GABRIEL", "ARTHUR", "JULES",
                   "NICOLAS", "THOMAS", "JÉRÔME", "FRANÇOIS", "RAPHAËL", "NOËL", "MAËL"],
               2: ["MARIE", "EMMA", "JADE", "LOUISE", "ALICE", "CHLOÉ", "LÉA", "MANON", "INÈS",
                   "CÉLINE", "HÉLÈNE", "ÉLODIE", "ZOÉ", "ANAÏS", "FRANÇOISE"]}
COMPANY_WORDS = ["ATELIERS", "TRANSPORTS", "BOULANGERIE", "CABINET", "GARAGE", "SOCIETE",
                 "CLINIQUE", "HOTEL", "IMPRIMERIE", "MENUISERIE"]
TOWNS = ["LYON", "PARIS", "MARSEILLE", "LILLE", "NANTES", "RENNES", "DIJON", "BREST",
         "TOULOUSE", "NIMES", "ANNECY", "ORLEANS"]
IDCC_APE = [("1486", "6202A"), ("3248", "2562B"), ("0843", "1071C"), ("2216", "4711D"),
            ("1979", "5610A"), ("0016", "4941A"), ("2264", "8610Z"), ("1517", "4778C")]
DEPTS = [f"{d:02d}" for d in range(1, 96) if d != 20]


def _rand_date(rng: random.Random, lo: date, hi: date) -> date:
    return lo + timedelta(days=rng.randrange((hi - lo).days + 1))


def plan_employers(seed: int, employers: int, *, encoding_mix: bool) -> list[EmployerPlan]:
    """Employers with Luhn-valid SIREN/SIRET, a convention and a file encoding."""
    rng = random.Random(f"employers-{seed}")
    out = []
    for i in range(employers):
        siren = luhn_complete(f"{(31000000 + i * 7919 + rng.randrange(7919)) % 100000000:08d}")
        nic = luhn_complete(siren + f"{1 + rng.randrange(9000):04d}")[9:]
        idcc, ape = IDCC_APE[rng.randrange(len(IDCC_APE))]
        if encoding_mix:
            encoding = ("latin-1",) * 7 + ("cp1252", "cp1252", "utf-8")
            enc = encoding[i % 10]
            newline = "\r\n" if i % 4 == 3 else "\n"
        else:
            enc, newline = "latin-1", "\n"
        name = f"{COMPANY_WORDS[rng.randrange(len(COMPANY_WORDS))]} {TOWNS[i % len(TOWNS)]} {i:05d}"
        out.append(EmployerPlan(i, siren, nic, name, idcc, ape, enc, newline))
    return out


def _plan_job(rng: random.Random, employer: int, cno: str, year: int, sex: int,
              birth: date, part_time_only: bool) -> JobPlan:
    y0, y1 = date(year, 1, 1), date(year, 12, 31)
    hire_floor = max(date(birth.year + 18, 1, 1), date(1995, 1, 1))
    start = (_rand_date(rng, y0, date(year, 11, 30)) if rng.random() < 0.12
             else _rand_date(rng, min(hire_floor, date(year - 1, 12, 1)), date(year - 1, 12, 1)))
    end, reason, nature, planned = None, "", "01", None
    if rng.random() < 0.12:
        end = _rand_date(rng, max(start, y0), y1)
        reason = rng.choice(["031", "031", "059", "043", "020"])
        if reason == "031":
            nature, planned = "02", end
    u = rng.random()
    boeth = rng.choice(["01", "02", "03", "08"]) if rng.random() < 0.03 else None
    if u < 0.05 and not part_time_only:
        job = JobPlan(employer, cno, start, end, reason, nature, planned, "20", FORFAIT_H,
                      FORFAIT_H, 350000 + rng.randrange(300000), "04", boeth,
                      forfait_activity=rng.random() < 0.6)
    elif u < 0.06:
        job = JobPlan(employer, cno, start, end, reason, nature, planned, "99", 0, 0,
                      30000 + rng.randrange(170000), "06", boeth)
    else:
        if part_time_only:
            quota = rnd_div(FULL_H * rng.choice([30, 40, 50]), 100)
        elif rng.random() < 0.7:
            quota = FULL_H
        else:
            quota = rnd_div(FULL_H * rng.choice([30, 40, 50, 60, 80]), 100)
        job = JobPlan(employer, cno, start, end, reason, nature, planned, "10", FULL_H, quota,
                      1188 + rng.randrange(2500), rng.choice(["05", "06", "07"]), boeth)
        if rng.random() < 0.002:  # ESAT worker (contrat de soutien et d'aide par le travail)
            job.nature, job.planned_end, job.boeth = "70", date(year + 1, 12, 31), None
            job.rate_cents = 1188
        _plan_absence(rng, job, year, sex)
        if rng.random() < 0.01:
            declared = 2 + rng.randrange(11)
            job.recall = (declared, 1 + rng.randrange(declared - 1), 100 + rng.randrange(1500))
    return job


def _plan_absence(rng: random.Random, job: JobPlan, year: int, sex: int) -> None:
    """At most one absence per hourly job, of a kind drawn with rough real frequencies."""
    u = rng.random()
    lo = max(job.start, date(year - 1, 12, 1))
    hi = min(job.end or date(year, 12, 31), date(year, 12, 31))
    if lo > hi:
        return
    start = _rand_date(rng, lo, hi)
    kinds = [(0.015 if sex == 2 else 0.0, "60", "02", 112, 112),
             (0.005 if sex == 1 else 0.0, "60", "03", 25, 25),
             (0.02, "60", "06", 10, 90), (0.003, "60", "05", 30, 120),
             (0.01, "65", "632", 60, 300), (0.003, "65", "650", 5, 60),
             (0.06, "60", "01", 3, 60), (0.015, "65", "501", 5, 60), (0.005, "60", "04", 5, 40)]
    acc = 0.0
    for p, block, code, dmin, dmax in kinds:
        acc += p
        if u < acc:
            length = dmin + rng.randrange(dmax - dmin + 1)
            end = start + timedelta(days=length - 1)
            paid = code in ("02", "06") and rng.random() < 0.5
            job.absences.append(Absence(block, code, start, end, paid))
            return


def plan_people(seed: int, people: int, employers: int, year: int,
                employer_plans: list[EmployerPlan]) -> list[PersonPlan]:
    """Every person's identity and jobs, from one seeded RNG (deterministic)."""
    rng = random.Random(f"people-{seed}-{year}")
    latin1 = {e.idx for e in employer_plans if e.encoding == "latin-1"}
    out = []
    for i in range(people):
        sex = 1 + (rng.random() < 0.48)
        birth = _rand_date(rng, date(year - 64, 1, 1), date(year - 18, 12, 31))
        primary = min(employers - 1, int(employers * rng.random() ** 1.3))
        multi = rng.random() < 0.03 and employers > 1
        jobs = [_plan_job(rng, primary, f"C{i:08d}A", year, sex, birth, multi)]
        if multi:
            other = (primary + 1 + rng.randrange(employers - 1)) % employers
            jobs.append(_plan_job(rng, other, f"C{i:08d}B", year, sex, birth, True))
        dept = DEPTS[(i // 998001) % len(DEPTS)]
        commune, order = 1 + (i // 999) % 999, 1 + i % 999
        nir = f"{sex}{birth.year % 100:02d}{birth.month:02d}{dept}{commune:03d}{order:03d}"
        ntt = None
        if rng.random() < 0.002:
            nir, ntt = None, f"{sex}{employer_plans[primary].siren}{i:08d}"
        names = LAST_NAMES + (LAST_NAMES_CP1252 if not ({j.employer for j in jobs} & latin1)
                              else [])
        out.append(PersonPlan(i, nir, ntt, sex, names[rng.randrange(len(names))],
                              FIRST_NAMES[sex][rng.randrange(len(FIRST_NAMES[sex]))], birth,
                              jobs))
    return out


# --------------------------------------------------------------------------------------
# Month figures shared by the writer and the truth


@dataclass(slots=True)
class MonthFigures:
    contract_days: int
    dim: int
    first: date
    last: date
    paid_h: int | None  # Activité type 01 (None: no Activité block)
    unpaid_h: int  # Activité type 02
    gross_cents: int
    qualifying_days: int


def month_figures(job: JobPlan, year: int, month: int) -> MonthFigures | None:
    """What the payroll declares for ``job`` in ``month`` (None when not under contract)."""
    cd, dim, first, last = job.days_in(year, month)
    if cd <= 0:
        return None
    absent_unpaid = qualifying = 0
    for a in job.absences:
        lo, hi = max(a.start, first), min(a.end, last)
        if lo <= hi:
            days = (hi - lo).days + 1
            if not a.paid:
                absent_unpaid += days
            if a.qualifying:
                qualifying += days
    if job.unit == "10":
        paid = rnd_div(job.quota_h * (cd - absent_unpaid), dim)
        unpaid = rnd_div(job.quota_h * absent_unpaid, dim) if absent_unpaid else 0
        gross = job.rate_cents * paid // 100
        return MonthFigures(cd, dim, first, last, paid, unpaid, gross, qualifying)
    if job.unit == "20":
        days = rnd_div(job.quota_h * cd, dim * 100) * 100 if job.forfait_activity else None
        gross = job.rate_cents * cd // dim
        return MonthFigures(cd, dim, first, last, days, 0, gross, 0)
    gross = job.rate_cents * cd // dim
    return MonthFigures(cd, dim, first, last, None, 0, gross, 0)


def job_month_ratio(job: JobPlan, year: int, month: int, f: MonthFigures,
                    recall_h: int = 0) -> Fraction:
    """counted / monthly reference for one contract-month (cpf_rules.md §2)."""
    if job.unit == "99":  # the year's pay against the year's reference, 2 080/12 x the SMIC
        # of each month summed (cpf_rules.md §2.1): linear in pay, so month by month; not
        # each month against its own SMIC, which differs in a year the SMIC changes (round-6
        # money pass L1)
        smic_year = sum(smic_cents(date(year, m, 1)) for m in range(1, 13))
        return Fraction(f.gross_cents * 144, 2080 * smic_year)
    if job.unit == "20":
        counted = (Fraction(f.paid_h) if f.paid_h is not None
                   else Fraction(job.quota_h * f.contract_days, f.dim))
        return counted / FORFAIT_REF
    paid = (f.paid_h or 0) + recall_h
    counted = Fraction(paid)
    if f.qualifying_days:
        absence = Fraction(job.quota_h * f.qualifying_days, f.dim)
        counted += min(absence, max(Fraction(0), Fraction(job.quota_h - paid)))
    return counted / job.ref_h


def person_ratio(p: PersonPlan, year: int) -> Fraction:
    total = Fraction(0)
    for job in p.jobs:
        # a recall is written in the DSN of its declared month: none if the job is not
        # declared then (it ended before)
        written = job.recall and month_figures(job, year, job.recall[0]) is not None
        recall = {job.recall[1]: job.recall[2]} if written else {}
        for month in range(1, 13):
            f = month_figures(job, year, month)
            if f is not None:
                total += job_month_ratio(job, year, month, f, recall.get(month, 0))
    return total / 12


def person_category(p: PersonPlan) -> str:
    if any(j.nature == "70" for j in p.jobs):
        return "esat"
    if any(j.boeth for j in p.jobs):
        return "boeth"
    return "standard"


def credit_cents(ratio: Fraction, category: str) -> int:
    amount = 50000 if category == "standard" else 80000
    if category == "esat" or ratio >= Fraction(1, 2):
        return amount
    value = amount * ratio
    return -((-value.numerator) // value.denominator)


# --------------------------------------------------------------------------------------
# Text rendering


def _block(block: str, pairs: list[tuple[str, str | None]]) -> str:
    return "".join(f"{block}.{num},'{v}'\n" for num, v in pairs if v is not None and v != "")


def _person_head(p: PersonPlan) -> str:
    return _block("S21.G00.30", [
        ("001", p.nir), ("002", p.last_name), ("004", p.first_names), ("006", d8(p.birth)),
        ("007", "PARIS"), ("008", "2 AVENUE DES TILLEULS"), ("009", "69001"), ("010", "LYON"),
        ("013", "01"), ("019", f"M{p.idx:08d}"), ("020", p.ntt), ("023", "01")])


def _contract_head(job: JobPlan, e: EmployerPlan) -> str:
    cadre = job.status == "04"
    return _block("S21.G00.40", [
        ("001", d8(job.start)), ("002", job.status), ("003", "01" if cadre else "04"),
        ("004", "388A" if cadre else "526A"), ("006", "CADRE" if cadre else "EMPLOYE"),
        ("007", job.nature), ("008", "99"), ("009", job.contract_no),
        ("010", d8(job.planned_end) if job.planned_end else None), ("011", job.unit),
        ("012", m2(job.ref_h)), ("013", m2(job.quota_h)),
        ("014", "99" if job.unit == "99" else ("10" if job.quota_h >= job.ref_h else "20")),
        ("016", "99"), ("017", e.idcc), ("018", "200"), ("019", e.siret), ("020", "200"),
        ("024", "99"), ("072", job.boeth)])


CONTRACT_TAIL = ("S21.G00.70.004,'OPT1'\nS21.G00.70.005,'NC'\nS21.G00.70.012,'{aff}'\n"
                 "S21.G00.70.013,'001'\nS21.G00.70.014,'{start}'\nS21.G00.71.002,'RUAA'\n")

# Cotisations under each base 78.001: (code 81.001, rate in 1e-7 of the base, i.e. 700000 = 7 %)
COTISATIONS = {
    "03": [("075", 700000), ("076", 240000), ("074", 345000), ("045", 208000), ("068", 30000),
           ("100", 1600), ("081", 295000), ("128", 55000), ("091", 35000)],
    "02": [("076", 1545000), ("049", 10000), ("131", 787000), ("142", 472000)],
    "04": [("072", 920000), ("079", 50000)],
    "07": [("040", 400000), ("048", 25000)],
    "31": [("059", 150000)],
}
URSSAF = "78861779300013"


_COTIS_TEXT = {
    base: [(rate, f"S21.G00.81.001,'{code}'\nS21.G00.81.002,'{URSSAF}'\nS21.G00.81.003,'",
            f"'\nS21.G00.81.007,'{m2(rate // 1000)}'\n") for code, rate in cotis]
    for base, cotis in COTISATIONS.items()
}
SMIC_MONTH_CENTS = 180184  # 151.67 h × 11.88 €, for the réduction générale threshold


def _bases(first: str, last: str, cno: str, gross: int) -> tuple[str, int]:
    """78/79/81 blocks for one month's gross pay, and the cotisations total.

    Constant parts of each 81 block are pre-rendered (``_COTIS_TEXT``): only the amounts
    are formatted per person-month, which keeps this the cheap part of the hot path.
    """
    capped = min(gross, PMSS_CENTS)
    csg = gross * 9825 // 10000
    bases = (("02", capped), ("03", gross), ("04", csg), ("07", min(gross, 4 * PMSS_CENTS)),
             ("10", gross), ("31", gross))
    parts = []
    total = 0
    period = f"S21.G00.78.002,'{first}'\nS21.G00.78.003,'{last}'\nS21.G00.78.004,'"
    for code, base in bases:
        bs = m2(base)
        parts.append(f"S21.G00.78.001,'{code}'\n{period}{bs}'\n")
        if code == "31":
            parts.append(f"S21.G00.78.005,'001'\nS21.G00.78.006,'{cno}'\n"
                         f"S21.G00.79.001,'10'\nS21.G00.79.004,'{bs}'\n"
                         f"S21.G00.79.001,'11'\nS21.G00.79.004,'{m2(capped)}'\n")
        for rate, pre, post in _COTIS_TEXT.get(code, ()):
            amount = base * rate // 10000000
            total += amount
            parts.append(f"{pre}{bs}'\nS21.G00.81.004,'{m2(amount)}{post}")
        if code == "03" and 0 < gross < SMIC_MONTH_CENTS * 16 // 10:
            amount = -(gross * 3193 // 100000)
            total += amount
            parts.append(f"S21.G00.81.001,'018'\nS21.G00.81.002,'{URSSAF}'\n"
                         f"S21.G00.81.003,'{bs}'\nS21.G00.81.004,'{m2(amount)}'\n")
    return "".join(parts), total


def _rem_set(first: str, last: str, cno: str, gross: str, activities: str) -> str:
    out = []
    for t in ("001", "002", "003", "010"):
        out.append(f"S21.G00.51.001,'{first}'\nS21.G00.51.002,'{last}'\n"
                   f"S21.G00.51.010,'{cno}'\nS21.G00.51.011,'{t}'\nS21.G00.51.013,'{gross}'\n")
        if t == "002":
            out.append(activities)
    return "".join(out)


def _stoppage_lines(job: JobPlan, month_last: date) -> str:
    out = []
    for a in job.absences:
        if a.start > month_last or a.end < month_last.replace(day=1):
            continue
        if a.block == "60":
            resumed = a.end + timedelta(days=1)
            known = resumed <= month_last
            out.append(_block("S21.G00.60", [
                ("001", a.code), ("002", d8(a.start - timedelta(days=1))), ("003", d8(a.end)),
                ("004", "01" if a.paid else "02"),
                ("010", d8(resumed) if known else None), ("011", "01" if known else None),
                ("012", d8(a.start - timedelta(days=1)) if a.code in ("04", "05", "06")
                 else None)]))
    return "".join(out)


def _suspension_lines(job: JobPlan, month_last: date) -> str:
    return "".join(
        _block("S21.G00.65", [("001", a.code), ("002", d8(a.start)), ("003", d8(a.end))])
        for a in job.absences
        if a.block == "65" and a.start <= month_last and a.end >= month_last.replace(day=1))


def render_person_month(p: PersonPlan, job: JobPlan, e: EmployerPlan, year: int, month: int,
                        f: MonthFigures, head: str, contract_head: str, rng: random.Random,
                        anomalies: float) -> tuple[str, int]:
    """Text of one person's S21.G00.30 subtree for one month, and its cotisations total."""
    first, last = d8(f.first), d8(f.last)
    month_last = date(year, month, f.dim)
    cno = job.contract_no
    parts = [head, contract_head, _stoppage_lines(job, month_last)]
    if job.end is not None and job.end.month == month and job.end.year == year:
        parts.append(f"S21.G00.62.001,'{d8(job.end)}'\nS21.G00.62.002,'{job.end_reason}'\n"
                     "S21.G00.63.001,'90'\n")
    parts.append(_suspension_lines(job, month_last))
    parts.append(CONTRACT_TAIL.format(aff=f"{job.employer % 900 + 100:03d}",
                                      start=d8(job.start)))
    acts = []
    if f.paid_h is not None:
        acts.append(f"S21.G00.53.001,'01'\nS21.G00.53.002,'{m2(f.paid_h)}'\n")
    if f.unpaid_h:
        acts.append(f"S21.G00.53.001,'02'\nS21.G00.53.002,'{m2(f.unpaid_h)}'\n")
    acts.append(f"S21.G00.53.001,'01'\nS21.G00.53.002,'{f.contract_days}.00'\n"
                "S21.G00.53.003,'40'\n")
    gross = f.gross_cents
    rems = _rem_set(first, last, cno, m2(gross), "".join(acts))
    if job.recall and job.recall[0] == month:
        _, pm, hours = job.recall
        pdim = calendar.monthrange(year, pm)[1]
        pfirst = d8(max(date(year, pm, 1), job.start))
        amount = job.rate_cents * hours // 100
        rems += _rem_set(pfirst, d8(date(year, pm, pdim)), cno, m2(amount),
                         f"S21.G00.53.001,'01'\nS21.G00.53.002,'{m2(hours)}'\n")
        gross += amount
    net = gross * 78 // 100
    pas = net * 45 // 1000
    paid_on = d8(month_last)
    if anomalies and rng.random() < anomalies:
        paid_on = f"31{month:02d}{year}" if month in (2, 4, 6, 9, 11) else f"32{month:02d}{year}"
    pay = (f"S21.G00.50.001,'{paid_on}'\nS21.G00.50.002,'{m2(net)}'\n"
           f"S21.G00.50.004,'{m2(net - pas)}'\nS21.G00.50.006,'4.50'\n"
           f"S21.G00.50.007,'01'\nS21.G00.50.008,'{p.idx % 10**15 + 1}'\n"
           f"S21.G00.50.009,'{m2(pas)}'\nS21.G00.50.013,'{m2(net)}'\n")
    bases, cotis = _bases(first, last, cno, gross)
    tickets = 10 * 550 * f.contract_days // f.dim * 2
    other = (f"S21.G00.54.001,'17'\nS21.G00.54.002,'{m2(tickets)}'\n"
             f"S21.G00.54.003,'{first}'\nS21.G00.54.004,'{last}'\nS21.G00.54.005,'{cno}'\n")
    seniority = max(0, (year - job.start.year) * 12 + month - job.start.month)
    parts += [pay, rems, other, bases,
              f"S21.G00.86.001,'07'\nS21.G00.86.002,'02'\nS21.G00.86.003,'{seniority}'\n"
              f"S21.G00.86.005,'{cno}'\n"]
    return "".join(parts), cotis


def _envoi_header(e: EmployerPlan, year: int, month: int, n_people: int, cotis: int,
                  norm: str) -> str:
    dim = calendar.monthrange(year, month)[1]
    nxt = date(year, month, dim) + timedelta(days=5)
    first, last = f"01{month:02d}{year}", f"{dim:02d}{month:02d}{year}"
    return (
        "S10.G00.00.001,'CPFGEN'\nS10.G00.00.002,'CPF-ALIMENTATION'\nS10.G00.00.003,'1.0'\n"
        f"S10.G00.00.005,'02'\nS10.G00.00.006,'{norm}'\nS10.G00.00.007,'01'\n"
        "S10.G00.00.008,'01'\n"
        f"S10.G00.01.001,'{e.siren}'\nS10.G00.01.002,'{e.nic}'\nS10.G00.01.003,'{e.name}'\n"
        "S10.G00.01.004,'1 RUE DE LA PAIX'\nS10.G00.01.005,'75002'\nS10.G00.01.006,'PARIS'\n"
        "S10.G00.02.001,'01'\nS10.G00.02.002,'SERVICE PAIE'\n"
        "S10.G00.02.004,'paie@exemple.invalid'\nS10.G00.02.005,'0102030405'\n"
        f"S20.G00.05.001,'01'\nS20.G00.05.002,'{'01' if n_people else '02'}'\n"
        f"S20.G00.05.003,'11'\nS20.G00.05.004,'1'\nS20.G00.05.005,'{first}'\n"
        f"S20.G00.05.007,'{d8(nxt)}'\nS20.G00.05.008,'01'\nS20.G00.05.010,'01'\n"
        f"S21.G00.06.001,'{e.siren}'\nS21.G00.06.002,'{e.nic}'\nS21.G00.06.003,'{e.apen}'\n"
        "S21.G00.06.004,'1 RUE DE LA PAIX'\nS21.G00.06.005,'75002'\nS21.G00.06.006,'PARIS'\n"
        f"S21.G00.11.001,'{e.nic}'\nS21.G00.11.002,'{e.apen}'\n"
        "S21.G00.11.003,'1 RUE DE LA PAIX'\nS21.G00.11.004,'75002'\n"
        f"S21.G00.11.005,'PARIS'\nS21.G00.11.017,'01'\nS21.G00.11.022,'{e.idcc}'\n"
        f"S21.G00.15.001,'PREV{e.idx:06d}'\nS21.G00.15.002,'P0942'\nS21.G00.15.004,'01'\n"
        "S21.G00.15.005,'001'\n"
        f"S21.G00.20.001,'{URSSAF}'\nS21.G00.20.005,'{m2(cotis)}'\n"
        f"S21.G00.20.006,'{first}'\nS21.G00.20.007,'{last}'\nS21.G00.20.010,'05'\n"
        f"S21.G00.22.001,'{URSSAF}'\nS21.G00.22.003,'{first}'\nS21.G00.22.004,'{last}'\n"
        f"S21.G00.22.005,'{m2(cotis)}'\n"
        f"S21.G00.23.001,'100'\nS21.G00.23.002,'921'\nS21.G00.23.005,'{m2(cotis)}'\n"
    )


def norm_version(year: int) -> str:
    return f"P{year % 100:02d}V01"


@dataclass
class GeneratedYear:
    """What ``generate_year`` wrote."""

    files: int
    bytes: int
    lines: int
    people: int
    declarations: int
    seconds: float = 0.0
    truth_path: Path | None = None
    person_months: int = 0  # person × contract × month blocks written

    @property
    def lines_per_person_month(self) -> float:
        return self.lines / self.person_months if self.person_months else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0


def _write_employer(args: tuple) -> tuple[int, int, int, int, int]:
    """Worker: the 12 files of one employer. Returns (files, bytes, lines, decls, pm)."""
    e, persons, out_dir, year, seed, anomalies = args
    rng = random.Random(f"anomalies-{seed}-{e.idx}")
    heads = {}
    for p in persons:
        for job in p.jobs:
            if job.employer == e.idx:
                heads[(p.idx, job.contract_no)] = (_person_head(p), _contract_head(job, e))
    files = nbytes = nlines = decls = pms = 0
    norm = norm_version(year)
    for month in range(1, 13):
        chunks, cotis, n = [], 0, 0
        for p in persons:
            for job in p.jobs:
                if job.employer != e.idx:
                    continue
                f = month_figures(job, year, month)
                if f is None:
                    continue
                head, chead = heads[(p.idx, job.contract_no)]
                text, c = render_person_month(p, job, e, year, month, f, head, chead, rng,
                                              anomalies)
                chunks.append(text)
                cotis += c
                n += 1
        body = "".join(chunks)
        if anomalies and n and rng.random() < anomalies:
            body = body.replace("S21.G00.30.010,'LYON'", "S21.G00.30.010,LYON", 1)
        header = _envoi_header(e, year, month, n, cotis, norm)
        count = header.count("\n") + body.count("\n") + 2
        text = f"{header}{body}S90.G00.90.001,'{count}'\nS90.G00.90.002,'1'\n"
        if e.newline != "\n":
            text = text.replace("\n", e.newline)
        payload = text.encode(e.encoding)
        path = Path(out_dir) / f"{e.siret}_{year}{month:02d}_11.dsn"
        path.write_bytes(payload)
        files += 1
        decls += 1
        nbytes += len(payload)
        nlines += count
        pms += n
    return files, nbytes, nlines, decls, pms


def write_truth(path: Path, persons: list[PersonPlan], year: int) -> Path:
    """nir → exact worked ratio (num/den), its float, category and the expected credit."""
    import polars as pl

    rows = {"nir": [], "ntt": [], "ratio_num": [], "ratio_den": [], "ratio": [],
            "category": [], "credit_cents": []}
    for p in persons:
        r = person_ratio(p, year)
        cat = person_category(p)
        rows["nir"].append(p.nir)
        rows["ntt"].append(p.ntt)
        rows["ratio_num"].append(str(r.numerator))
        rows["ratio_den"].append(str(r.denominator))
        rows["ratio"].append(float(r))
        rows["category"].append(cat)
        rows["credit_cents"].append(credit_cents(r, cat) if p.nir else None)
    pl.DataFrame(rows, schema={"nir": pl.String, "ntt": pl.String, "ratio_num": pl.String,
                               "ratio_den": pl.String, "ratio": pl.Float64,
                               "category": pl.String, "credit_cents": pl.Int64}
                 ).write_parquet(path)
    return path


def generate_year(out_dir: Path, seed: int, people: int, employers: int, year: int, *,
                  encoding_mix: bool = True, anomalies: float = 0.0,
                  truth: bool = False, processes: int | None = None) -> GeneratedYear:
    """Write one DSN file per employer × month of ``year`` into ``out_dir``.

    Deterministic for (seed, people, employers, year, encoding_mix, anomalies): the plan is
    drawn from seeded RNGs in a fixed order and each employer's files depend only on its own
    slice of the plan, so the process count does not change a byte. ``anomalies`` is the
    probability, per person-month, of an impossible payment date (S21.G00.50.001) and, per
    file, of one line without quotes — both on rubriques that do not change the credit.
    ``truth=True`` also writes ``truth.parquet`` next to the files (exact ratios).
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    emps = plan_employers(seed, employers, encoding_mix=encoding_mix)
    persons = plan_people(seed, people, employers, year, emps)
    by_employer: list[list[PersonPlan]] = [[] for _ in emps]
    for p in persons:
        for idx in sorted({j.employer for j in p.jobs}):
            by_employer[idx].append(p)
    # Biggest employers first, one task at a time: the pool stays balanced even though
    # employer sizes follow a power law.
    tasks = sorted(((e, by_employer[e.idx], str(out_dir), year, seed, anomalies) for e in emps),
                   key=lambda t: (-len(t[1]), t[0].idx))
    procs = processes or min(os.cpu_count() or 1, 8)
    if procs > 1 and len(tasks) > 1:
        with mp.get_context("fork").Pool(procs) as pool:
            results = list(pool.imap_unordered(_write_employer, tasks, chunksize=1))
    else:
        results = [_write_employer(t) for t in tasks]
    files = sum(r[0] for r in results)
    nbytes = sum(r[1] for r in results)
    lines = sum(r[2] for r in results)
    decls = sum(r[3] for r in results)
    pms = sum(r[4] for r in results)
    truth_path = write_truth(out_dir / "truth.parquet", persons, year) if truth else None
    return GeneratedYear(files, nbytes, lines, people, decls, time.perf_counter() - t0,
                         truth_path, pms)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--people", type=int, default=20000)
    ap.add_argument("--employers", type=int, default=200)
    ap.add_argument("--year", type=int, default=2025)
    ap.add_argument("--anomalies", type=float, default=0.0)
    ap.add_argument("--no-encoding-mix", action="store_true")
    ap.add_argument("--truth", action="store_true", help="also write truth.parquet")
    ap.add_argument("--processes", type=int, default=None)
    a = ap.parse_args(argv)
    g = generate_year(a.out, a.seed, a.people, a.employers, a.year,
                      encoding_mix=not a.no_encoding_mix, anomalies=a.anomalies,
                      truth=a.truth, processes=a.processes)
    print(f"{g.files} files, {g.bytes / 1e6:.1f} MB, {g.lines} lines, {g.people} people, "
          f"{g.declarations} declarations in {g.seconds:.1f} s ({g.mb_per_s:.1f} MB/s), "
          f"{g.lines_per_person_month:.0f} lines/person-month")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
