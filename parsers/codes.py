"""Every DSN code, rubrique id and quarantine code the ingestion relies on, in one place.

Why one module: the parser, the validator, the table builders and the tests must agree on
the same literal codes; scattering ``"S21.G00.40.009"`` or ``"03"`` through the code makes
norm changes error-prone.
"""

from __future__ import annotations

# --- Structure of a file ---------------------------------------------------------------
RUBRIQUE_ID_WIDTH = 14  # "S21.G00.30.001"
BLOCK_ID_WIDTH = 10  # "S21.G00.30"
VALUE_OFFSET = RUBRIQUE_ID_WIDTH + 2  # after "<id>,'"
MAX_LINE_CHARS = 256  # CT2025 §3.4 (record length)
RUBRIQUE_ID_PATTERN = r"^S[0-9]{2}\.G[0-9]{2}\.[0-9]{2}\.[0-9]{3}$"

ENVELOPE_STRUCTURES = ("S05", "S06", "S95", "S96")  # receiver lot envelope (norm V01R02)
ENVELOPE_NORM = "V01R02"

ENVOI = "S10.G00.00"  # Envoi (file header)
DECLARATION = "S20.G00.05"  # Déclaration
TOTALS = "S90.G00.90"  # Total de l'envoi
ENTERPRISE = "S21.G00.06"  # Entreprise
ESTABLISHMENT = "S21.G00.11"  # Etablissement
INDIVIDUAL = "S21.G00.30"  # Individu
CONTRACT = "S21.G00.40"  # Contrat
PAYMENT = "S21.G00.50"  # Versement individu
PAY = "S21.G00.51"  # Rémunération
ACTIVITY = "S21.G00.53"  # Activité
WORK_STOPPAGE = "S21.G00.60"  # Arrêt de travail
CONTRACT_END = "S21.G00.62"  # Fin du contrat
SUSPENSION = "S21.G00.65"  # Autre suspension de l'exécution du contrat
INDIVIDUAL_CHANGE = "S21.G00.31"  # Changements individu (child of 30)
CONTRACT_CHANGE = "S21.G00.41"  # Changements contrat (child of 40)

# Ancestor block types whose open occurrence each line remembers (§1.4 parent rule).
ANCESTOR_BLOCKS = (ENTERPRISE, ESTABLISHMENT, INDIVIDUAL, CONTRACT, PAYMENT, PAY)

# Envoi header / totals rubriques
ENVOI_TEST_FLAG = "S10.G00.00.005"  # 01 = test file, 02 = real
ENVOI_NORM_VERSION = "S10.G00.00.006"
TOTAL_RUBRIQUES = "S90.G00.90.001"  # lines from S10.G00.00.001 to S90 inclusive
TOTAL_DECLARATIONS = "S90.G00.90.002"  # number of S20 structures
TEST_ENVOI = "01"

# Déclaration rubriques
DECL_NATURE = "S20.G00.05.001"
DECL_TYPE = "S20.G00.05.002"
DECL_FRACTION = "S20.G00.05.003"
DECL_ORDER_NO = "S20.G00.05.004"
DECL_MONTH = "S20.G00.05.005"
DECL_REPLACED_ID = "S20.G00.05.006"
DECL_CONSTITUTION_DATE = "S20.G00.05.007"
SIREN = "S21.G00.06.001"
NIC = "S21.G00.11.001"
IDCC_ESTABLISHMENT = "S21.G00.11.022"
NIR = "S21.G00.30.001"
BIRTH_DATE = "S21.G00.30.006"
NTT = "S21.G00.30.020"
CONTRACT_NO = "S21.G00.40.009"
PAY_CONTRACT_NO = "S21.G00.51.010"
# Identity changes (dsn_format.md §1.5): the OLD identifying values, under the current ones.
CHANGE_DATE_INDIVIDUAL = "S21.G00.31.001"  # date de la modification
OLD_NIR = "S21.G00.31.008"  # ancien NIR
CHANGE_DATE_CONTRACT = "S21.G00.41.001"  # date de la modification
OLD_SIRET = "S21.G00.41.012"  # SIRET ancien établissement d'affectation
OLD_CONTRACT_NO = "S21.G00.41.014"  # ancien numéro du contrat
# CT2025 §4.4.11 (40.009 / 51.010 CSL-11): the characters a contract number may hold, and it
# may not begin or end with a space.
CONTRACT_NUMBER_CHARS = r"\-A-Za-z0-9./@_àéèêëïôç"  # the space only inside
CONTRACT_NUMBER_PATTERN = (f"^[{CONTRACT_NUMBER_CHARS}]"
                           f"([{CONTRACT_NUMBER_CHARS} ]*[{CONTRACT_NUMBER_CHARS}])?$")
OLD_CONTRACT_START = "S21.G00.41.021"  # ancienne date de début du contrat

NATURE_MENSUELLE = "01"  # DSN mensuelle: the only nature the CPF receives (CT2025 §5.1)
NATURE_SUBSTITUTION = "09"  # DSN de substitution
# Natures validated strictly (their anomalies reject lines/declarations). Signalements
# (04, 05, 07, 08, 10) are kept for audit but never credited: their anomalies are warnings.
STRICT_NATURES = (NATURE_MENSUELLE, NATURE_SUBSTITUTION)
# Natures whose 51.010 must match a 40.009 of the same individual (CCH-11 on 51.010).
CONTRACT_LINK_NATURES = (NATURE_MENSUELLE, NATURE_SUBSTITUTION)
REPLACING_TYPES = ("03", "05")  # annule et remplace intégral / sans individu
# S20.G00.05.002 CCH-13/14/15: declaration types tied to natures. 04 "déclaration annule" only
# for 07/08/09 (a DSN mensuelle is never simply cancelled: dsn_format.md §2.1, §3.3); 02/05
# "sans individu" only for a DSN mensuelle; 03 "annule et remplace intégral" never for 08.
TYPE_ONLY_FOR_NATURES = {"04": ("07", "08", NATURE_SUBSTITUTION),
                         "02": (NATURE_MENSUELLE,), "05": (NATURE_MENSUELLE,)}
TYPE_FORBIDDEN_FOR_NATURES = {"03": ("08",)}

# Blocks validated strictly (format, enumeration, date); others get a length check only.
STRICT_BLOCKS = (
    ENVOI, DECLARATION, ENTERPRISE, ESTABLISHMENT, INDIVIDUAL, CONTRACT, PAYMENT, PAY,
    ACTIVITY, WORK_STOPPAGE, CONTRACT_END, SUSPENSION, TOTALS,
)

# Rubriques whose anomaly rejects the whole declaration (identity, keys, periods): without
# them the declaration's rows cannot be attached to the right person, contract or period.
KEY_RUBRIQUES = frozenset({
    SIREN, NIC, NIR, CONTRACT_NO, "S21.G00.40.001",
    "S21.G00.51.001", "S21.G00.51.002", PAY_CONTRACT_NO, "S21.G00.51.011",
    "S21.G00.60.001", "S21.G00.60.002", "S21.G00.62.001",
    "S21.G00.65.001", "S21.G00.65.002", "S21.G00.65.003",
})
KEY_BLOCK_PREFIXES = (DECLARATION,)  # every S20.G00.05.* rubrique is a key
# Mandatory rubriques (norm) of the blocks the crediting reads: an occurrence without one
# of them cannot be used, so its declaration is rejected (parsers.block_checks).
REQUIRED_IN_BLOCK = {
    CONTRACT: ("S21.G00.40.001", CONTRACT_NO),
    PAY: ("S21.G00.51.001", "S21.G00.51.002", PAY_CONTRACT_NO, "S21.G00.51.011",
          "S21.G00.51.013"),
    ACTIVITY: ("S21.G00.53.001", "S21.G00.53.002"),
    WORK_STOPPAGE: ("S21.G00.60.001", "S21.G00.60.002"),
    CONTRACT_END: ("S21.G00.62.001", "S21.G00.62.002"),
    SUSPENSION: ("S21.G00.65.001", "S21.G00.65.002"),
}

# Platform enrichment (receiver side, CT-external): kept knowingly, never an anomaly.
ENRICHMENT_MIN_RUBRIQUE_NO = 900  # "…9xx" rubriques, e.g. S21.G00.06.903
ENRICHMENT_MIN_BLOCK_NO = 90  # unknown blocks S10.G00.95, S20.G00.96
ENRICHMENT_RUBRIQUES = frozenset(
    [f"S21.G00.30.{n}" for n in range(300, 314)]  # SNGI-certified identity
    + ["S21.G00.11.110", "S21.G00.11.111", "S21.G00.11.112"]
)

# Values masked in the quarantine (NIR-like identifiers): first 3 chars + "*".
MASKED_RUBRIQUES = frozenset({NIR, NTT, "S21.G00.31.008", "S21.G00.30.300", "S21.G00.30.311"})
MASK_KEEP_CHARS = 3
NIR_IN_TEXT_PATTERN = r"([12][0-9]{2})[0-9AB]{10}"  # masks NIR-looking runs in malformed lines

# NIR rules (CCH on S21.G00.30.001)
NIR_CORSICA_DEPTS = ("2A", "2B")
NIR_CORSICA_FROM_YEAR = 1976  # 2A/2B only for people born in 1976 or later
NIR_OLD_CORSICA_DEPT = "20"  # département "20" only for people born before 1976
NIR_OLD_CORSICA_BEFORE_YEAR = 1976
NIR_DEPT_96 = "96"  # département "96" only for people born before 1968
NIR_DEPT_96_BEFORE_YEAR = 1968
NIR_MAX_TRAILING_NINES = 5

# --- Quarantine -------------------------------------------------------------------------
class Reason:
    """Stable quarantine reason codes (docs/ingestion.md lists them)."""

    MALFORMED_LINE = "malformed_line"
    UNKNOWN_RUBRIQUE = "unknown_rubrique"
    BAD_FORMAT = "bad_format"
    BAD_ENUM = "bad_enum"
    INVALID_DATE = "invalid_date"
    INVALID_NIR = "invalid_nir"
    S90_COUNT_MISMATCH = "s90_count_mismatch"
    DECLARATION_WITHOUT_S20 = "declaration_without_s20"
    UNKNOWN_CONTRACT_NUMBER = "unknown_contract_number"
    NIR_BIRTH_YEAR_MISMATCH = "nir_birth_year_mismatch"  # on S21.G00.30.006 (CCH-11)
    DUPLICATE_NIR = "duplicate_nir"  # S21.G00.30.001 CCH-14
    DUPLICATE_CONTRACT_NUMBER = "duplicate_contract_number"  # S21.G00.40.009 CCH-12
    TYPE_NOT_ALLOWED_FOR_NATURE = "type_not_allowed_for_nature"  # S20.G00.05.002 CCH-13/14/15
    INDIVIDUAL_WITHOUT_IDENTIFIER = "individual_without_identifier"  # no usable NIR nor NTT
    BLOCK_WITHOUT_PARENT = "block_without_parent"  # CT2025 §3.2: no open parent block
    INCOMPLETE_BLOCK = "incomplete_block"  # a mandatory rubrique the crediting needs is absent
    LOT_COUNT_MISMATCH = "lot_count_mismatch"  # S96.G51.00.002 vs the DSN of its group
    LOT_TRUNCATED = "lot_truncated"  # a lot envelope without its S95 trailer
    UNREADABLE_FILE = "unreadable_file"
    NOT_N4DS_XML = "not_n4ds_xml"  # an XML document whose root is not in the N4DS namespace
    EMPTY_FILE = "empty_file"  # a flat file without a single line (0 bytes or blanks only)
    # warnings only (scope "warning": the line is still parsed)
    DAMAGED_CHARACTERS = "damaged_characters"
    UNKNOWN_NORM_VERSION = "unknown_norm_version"
    TEST_ENVOI = "test_envoi"  # S10.G00.00.005 = 01: parsed and kept, never used
    NOT_A_DSN_MENSUELLE = "not_a_dsn_mensuelle"  # S20.G00.05.001 != 01: kept, never credited
    ORIGIN_LINES_IGNORED = "origin_line_numbers_ignored"  # N4DS XML numbering only some values
    CONTRACT_NUMBER_CHARACTERS = "contract_number_characters"  # 40.009 / 51.010 CSL-11
    # scope "version": decided at publication for the whole lake (pipeline.versions), listed by
    # the catalog's quarantine view, not written by ingestion
    REPLACED_DECLARATION = "replaced_declaration"  # named by a later A&R's S20.G00.05.006
    OLDER_VERSION = "older_version"  # another version of its (SIRET, month, fraction) is used


class Scope:
    LINE = "line"
    DECLARATION = "declaration"
    ENVOI = "envoi"
    FILE = "file"
    WARNING = "warning"  # not a rejection: counted in IngestReport.warnings
    VERSION = "version"  # parsed and kept, not used: a later version of the declaration is


# Own anomalies whose scope does not follow the line's rubrique: warnings whatever the
# nature (the line is kept and used), and rejections of the whole declaration (its rows
# cannot be attributed) — validate's scope rule reads these two lists.
WARNING_REASONS = (Reason.CONTRACT_NUMBER_CHARACTERS, Reason.LOT_COUNT_MISMATCH,
                   Reason.LOT_TRUNCATED)
DECLARATION_REASONS = (Reason.INDIVIDUAL_WITHOUT_IDENTIFIER, Reason.BLOCK_WITHOUT_PARENT,
                       Reason.INCOMPLETE_BLOCK)
QUARANTINED_SCOPES = (Scope.LINE, Scope.DECLARATION, Scope.ENVOI, Scope.FILE)

# Input discovery
INPUT_SUFFIXES = (".dsn", ".txt", ".edi", ".xml")
