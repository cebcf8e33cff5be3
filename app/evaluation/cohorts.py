"""Labelled synthetic cohorts, one per model, generated deterministically from a seed.

Labels come from each synthetic patient's latent truth (their real kidney function, whether they
really have a condition, whether they were really readmitted), and the record the engine reads is
an imperfect view of it: measurement noise, stale results, drugs recorded only as brand names,
comorbidities not coded, emergency visits elsewhere. That gap is what the measures measure; an
engine evaluated on its own definitions would always look perfect.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from app.engines.base import PatientData
from app.evaluation import records
from app.evaluation.people import Person, person

COHORT_DATE = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
DEFAULT_COHORT_SIZE = 2000
DEFAULT_SEED = 20261123
EGFR = "98979-8"
HBA1C = "4548-4"
EGFR_UNIT = "mL/min/1.73m2"


@dataclass(frozen=True)
class Case:
    """One synthetic patient: what the engine sees, and what is true."""

    id: str
    demographics: dict[str, str]
    data: PatientData
    truth: dict[str, bool]
    outcome: bool | None = None
    facts: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "demographics": self.demographics,
            "hook": self.data.hook,
            "encounter": self.data.encounter_id,
            "resources": list(self.data.resources),
            "draftOrders": list(self.data.draft_orders),
            "truth": self.truth,
            "outcome": self.outcome,
        }


@dataclass(frozen=True)
class Cohort:
    name: str
    seed: int
    cases: tuple[Case, ...]

    @property
    def sha256(self) -> str:
        """Hash of the canonical JSON of every case: the card names exactly which data it was measured on."""
        canonical = json.dumps([c.as_json() for c in self.cases], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _days_ago(days: float) -> datetime:
    return COHORT_DATE - timedelta(days=days)


# medication-safety: metformin orders against true kidney function; NSAID orders against anticoagulants


def medication_safety_case(rng: random.Random, index: int) -> Case:
    who = person(rng, f"ms-{index:05d}", COHORT_DATE.date())
    pid = who.patient["id"]
    if rng.random() < 0.6:
        return _renal_case(rng, who, pid)
    return _interaction_case(rng, who, pid)


def _renal_case(rng: random.Random, who: Person, pid: str) -> Case:
    true_egfr = rng.choice(
        (rng.uniform(10, 30), rng.uniform(30, 45), rng.uniform(45, 100), rng.uniform(45, 100))
    )
    mg = rng.choice((500, 1000))
    draft = records.medication(
        f"{pid}-draft", pid, ("860975", "metformin 500 MG Oral Tablet"), "draft", mg, 2
    )
    if rng.random() < 0.85:
        measured = records.lab(
            f"{pid}-egfr", pid, EGFR, true_egfr + rng.gauss(0, 4), EGFR_UNIT, _days_ago(rng.uniform(5, 200))
        )
    else:  # an old result, from before the kidneys declined
        measured = records.lab(
            f"{pid}-egfr",
            pid,
            EGFR,
            true_egfr + rng.gauss(12, 6),
            EGFR_UNIT,
            _days_ago(rng.uniform(400, 700)),
        )
    unsafe = true_egfr < 30 or (true_egfr < 45 and mg * 2 > 1000)
    data = PatientData("order-sign", pid, (who.patient, measured), (draft,))
    return Case(pid, who.demographics, data, {"renal": unsafe})


ANTICOAGULANTS = (
    (("855332", "warfarin sodium 5 MG Oral Tablet"), 0.6),
    ((None, "Coumadin 5 mg tablet"), 0.15),
    (("1364430", "apixaban 5 MG Oral Tablet"), 0.25),
)


def _interaction_case(rng: random.Random, who: Person, pid: str) -> Case:
    draft = records.medication(
        f"{pid}-draft", pid, ("197806", "ibuprofen 600 MG Oral Tablet"), "draft", 600, 3
    )
    resources: list[dict] = [who.patient]
    on_anticoagulant = rng.random() < 0.5
    if on_anticoagulant:
        drug = rng.choices([d for d, _ in ANTICOAGULANTS], weights=[w for _, w in ANTICOAGULANTS])[0]
        resources.append(records.medication(f"{pid}-ac", pid, drug, "active", 5, 1))
    resources.append(records.medication(f"{pid}-ppi", pid, ("7646", "omeprazole 20 MG"), "active", 20, 1))
    data = PatientData("order-sign", pid, tuple(resources), (draft,))
    return Case(pid, who.demographics, data, {"interaction": on_anticoagulant})


# problem-list-gaps: latent conditions, sometimes already on the problem list


def problem_list_case(rng: random.Random, index: int) -> Case:
    who = person(rng, f"pl-{index:05d}", COHORT_DATE.date())
    pid = who.patient["id"]
    resources: list[dict] = [who.patient]
    truth = {}
    for name, builder in (
        ("type-2-diabetes", _diabetes),
        ("hypothyroidism", _hypothyroidism),
        ("chronic-kidney-disease", _ckd),
    ):
        present, recorded, evidence = builder(rng, pid)
        resources.extend(evidence)
        if recorded:
            resources.append(recorded)
        truth[name] = present and recorded is None
    return Case(pid, who.demographics, PatientData("patient-view", pid, tuple(resources)), truth)


def _recorded(rng: random.Random, present: bool, condition: dict) -> dict | None:
    return condition if present and rng.random() < 0.7 else None


def _diabetes(rng: random.Random, pid: str) -> tuple[bool, dict | None, list[dict]]:
    roll = rng.random()
    diabetic, prediabetic = roll < 0.25, 0.25 <= roll < 0.37
    mean, sd = (7.6, 1.1) if diabetic else (6.1, 0.25) if prediabetic else (5.4, 0.35)
    evidence = []
    if rng.random() < 0.85:
        evidence.append(
            records.lab(
                f"{pid}-a1c", pid, HBA1C, max(4.0, rng.gauss(mean, sd)), "%", _days_ago(rng.uniform(10, 300))
            )
        )
    if rng.random() < (0.75 if diabetic else 0.25 if prediabetic else 0.01):
        evidence.append(records.medication(f"{pid}-met", pid, ("6809", "metformin"), "active", 500, 2))
    condition = records.condition(f"{pid}-dm", pid, snomed="44054006", icd10="E11.9")
    return diabetic, _recorded(rng, diabetic, condition), evidence


def _hypothyroidism(rng: random.Random, pid: str) -> tuple[bool, dict | None, list[dict]]:
    present = rng.random() < 0.12
    evidence = []
    if rng.random() < (0.9 if present else 0.01):
        evidence.append(records.medication(f"{pid}-levo", pid, ("10582", "levothyroxine"), "active", 0.1, 1))
    condition = records.condition(f"{pid}-hypo", pid, snomed="40930008", icd10="E03.9")
    return present, _recorded(rng, present, condition), evidence


def _ckd(rng: random.Random, pid: str) -> tuple[bool, dict | None, list[dict]]:
    present = rng.random() < 0.15
    true_egfr = rng.uniform(20, 58) if present else rng.uniform(55, 110)
    evidence = []
    for n, days in enumerate(sorted(rng.uniform(10, 400) for _ in range(rng.randint(1, 3)))):
        value = true_egfr + rng.gauss(0, 5)
        if not present and rng.random() < 0.08:  # an episode of acute kidney injury
            value = rng.uniform(25, 55)
        evidence.append(records.lab(f"{pid}-egfr{n}", pid, EGFR, max(5.0, value), EGFR_UNIT, _days_ago(days)))
    condition = records.condition(f"{pid}-ckd", pid, snomed="709044004", icd10="N18.3")
    return present, _recorded(rng, present, condition), evidence


# readmission-risk: latent LACE components, an outcome drawn from them, and an imperfect record

CHARLSON_CODES = (
    ("I50.9", 1),
    ("J44.9", 1),
    ("E11.9", 1),
    ("I63.9", 1),
    ("N18.4", 2),
    ("C34.90", 2),
    ("C78.00", 6),
)
EMERGENCY = {"hospitalization": {"admitSource": {"coding": [{"code": "emd"}]}}}
ELECTIVE = {
    "hospitalization": {"admitSource": {"coding": [{"code": "hosp-trans"}]}},
    "priority": {"coding": [{"code": "R"}]},
}


def readmission_case(rng: random.Random, index: int) -> Case:
    who = person(rng, f"rr-{index:05d}", COHORT_DATE.date(), min_age=18, max_age=95)
    pid = who.patient["id"]
    stay_days = min(40, int(rng.lognormvariate(1.3, 0.8)))
    emergent = rng.random() < 0.6
    admitted = COHORT_DATE - timedelta(days=stay_days, hours=rng.uniform(0, 12))
    index_encounter = records.encounter(
        "index", pid, "IMP", admitted, stay_days * 24 + 6, **(EMERGENCY if emergent else ELECTIVE)
    )
    comorbidities = rng.sample(CHARLSON_CODES, k=min(len(CHARLSON_CODES), _poisson(rng, 1.2 + who.age / 60)))
    ed_visits = _poisson(rng, 0.8)
    resources: list[dict] = [who.patient, index_encounter]
    for n, (code, _) in enumerate(comorbidities):
        if rng.random() < 0.85:  # the rest live only in free-text notes
            resources.append(records.condition(f"{pid}-c{n}", pid, icd10=code))
    for n in range(ed_visits):
        if rng.random() < 0.8:  # the rest were at another hospital
            start = admitted - timedelta(days=rng.uniform(3, 175))
            resources.append(records.encounter(f"{pid}-ed{n}", pid, "EMER", start, 5))
    true_lace = _lace(stay_days, emergent, sum(w for _, w in comorbidities), ed_visits)
    risk = 1 / (1 + math.exp(-(-3.4 + 0.2 * true_lace + rng.gauss(0, 0.5))))
    readmitted = rng.random() < risk
    data = PatientData("encounter-discharge", pid, tuple(resources), encounter_id="Encounter/index")
    return Case(pid, who.demographics, data, {"readmitted": readmitted}, outcome=readmitted)


def _lace(stay: int, emergent: bool, charlson: int, ed: int) -> int:
    length = 0 if stay < 1 else stay if stay < 4 else 4 if stay < 7 else 5 if stay < 14 else 7
    return length + (3 if emergent else 0) + (charlson if charlson < 4 else 5) + min(ed, 4)


def _poisson(rng: random.Random, mean: float) -> int:
    threshold, count, product = math.exp(-mean), 0, rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


# discharge-summary-draft: every fact a summary should carry, and older results it should not repeat

DISCHARGE_CONDITIONS = (
    ("233604007", "Pneumonia"),
    ("84114007", "Heart failure"),
    ("13645005", "Chronic obstructive lung disease"),
    ("44054006", "Type 2 diabetes mellitus"),
    ("38341003", "Hypertension"),
    ("49436004", "Atrial fibrillation"),
    ("709044004", "Chronic kidney disease"),
    ("35489007", "Depressive disorder"),
    ("414916001", "Obesity"),
    ("40930008", "Hypothyroidism"),
    ("195967001", "Asthma"),
    ("399211009", "History of myocardial infarction"),
    ("230690007", "Cerebrovascular accident"),
    ("69896004", "Rheumatoid arthritis"),
    ("235595009", "Gastroesophageal reflux"),
    ("271737000", "Anaemia"),
    ("68566005", "Urinary tract infection"),
    ("36971009", "Sinusitis"),
    ("267036007", "Dyspnoea"),
    ("22298006", "Myocardial infarction"),
)
DISCHARGE_DRUGS = (
    ("6809", "metformin"),
    ("29046", "lisinopril"),
    ("83367", "atorvastatin"),
    ("1364430", "apixaban"),
    ("4603", "furosemide"),
    ("7646", "omeprazole"),
    ("10582", "levothyroxine"),
    ("723", "amoxicillin"),
    ("20352", "carvedilol"),
    ("52175", "losartan"),
    ("1191", "aspirin"),
    ("32968", "clopidogrel"),
    ("36567", "simvastatin"),
    ("9997", "spironolactone"),
    ("5640", "ibuprofen"),
    ("161", "acetaminophen"),
    ("6918", "metoprolol"),
    ("17767", "amlodipine"),
    ("8896", "prednisone"),
    ("2551", "ciprofloxacin"),
    ("25480", "gabapentin"),
    ("32937", "paroxetine"),
    ("36437", "sertraline"),
    ("1202", "atenolol"),
)
DISCHARGE_TESTS = (
    ("2160-0", "Creatinine", "mg/dL"),
    ("2823-3", "Potassium", "mmol/L"),
    ("2951-2", "Sodium", "mmol/L"),
    ("718-7", "Hemoglobin", "g/dL"),
    ("6690-2", "Leukocytes", "10*3/uL"),
    ("1988-5", "C reactive protein", "mg/L"),
    ("2345-7", "Glucose", "mg/dL"),
    ("4548-4", "Hemoglobin A1c", "%"),
    ("33762-6", "NT-proBNP", "pg/mL"),
    ("777-3", "Platelets", "10*3/uL"),
    ("1742-6", "ALT", "U/L"),
    ("3094-0", "Urea nitrogen", "mg/dL"),
    ("2093-3", "Cholesterol", "mg/dL"),
    ("3016-3", "TSH", "m[IU]/L"),
)
DISCHARGE_PROCEDURES = (
    ("399208008", "Chest X-ray"),
    ("40701008", "Echocardiography"),
    ("29303009", "Electrocardiogram"),
    ("77477000", "CT of abdomen"),
    ("387713003", "Surgical procedure"),
    ("73761001", "Colonoscopy"),
)


def discharge_summary_case(rng: random.Random, index: int) -> Case:
    """Truth is per fact (``kind|reference``): every active diagnosis, procedure and medication, and the
    latest result of each test, belongs in the summary; an older result of the same test does not."""
    who = person(rng, f"ds-{index:05d}", COHORT_DATE.date())
    pid = who.patient["id"]
    admitted = COHORT_DATE - timedelta(days=rng.randint(1, 12))
    encounter = records.encounter(
        "index", pid, "IMP", admitted, (COHORT_DATE - admitted).total_seconds() / 3600
    )
    resources: list[dict] = [who.patient, encounter]
    truth: dict[str, bool] = {}
    for n, (code, name) in enumerate(rng.sample(DISCHARGE_CONDITIONS, k=min(20, 1 + _poisson(rng, 5)))):
        resources.append(records.condition(f"{pid}-c{n}", pid, snomed=code, display=name))
        truth[f"diagnoses|Condition/{pid}-c{n}"] = True
    for n, (code, name) in enumerate(rng.sample(DISCHARGE_PROCEDURES, k=min(6, _poisson(rng, 1.5)))):
        resources.append(
            records.procedure(f"{pid}-p{n}", pid, "index", code, name, admitted + timedelta(hours=6))
        )
        truth[f"procedures|Procedure/{pid}-p{n}"] = True
    for n, drug in enumerate(rng.sample(DISCHARGE_DRUGS, k=min(24, 1 + _poisson(rng, 7)))):
        resources.append(records.medication(f"{pid}-m{n}", pid, drug, "active", 10, 1))
        truth[f"medications|MedicationRequest/{pid}-m{n}"] = True
    for n, (loinc, _, unit) in enumerate(rng.sample(DISCHARGE_TESTS, k=rng.randint(1, len(DISCHARGE_TESTS)))):
        for r in range(rng.randint(1, 3)):  # r = 0 is the latest result
            ref = f"{pid}-l{n}-{r}"
            resources.append(
                records.lab(
                    ref,
                    pid,
                    loinc,
                    rng.uniform(1, 200),
                    unit,
                    COHORT_DATE - timedelta(days=r * 2 + rng.random()),
                )
            )
            truth[f"results|Observation/{ref}"] = r == 0
    data = PatientData("encounter-discharge", pid, tuple(resources), encounter_id="Encounter/index")
    return Case(pid, who.demographics, data, truth)


GENERATORS: dict[str, Callable[[random.Random, int], Case]] = {
    "medication-safety": medication_safety_case,
    "problem-list-gaps": problem_list_case,
    "readmission-risk": readmission_case,
    "discharge-summary-draft": discharge_summary_case,
}


def generate(model_id: str, size: int, seed: int, progress: Callable[[int], None] = lambda _: None) -> Cohort:
    rng = random.Random(f"{model_id}:{seed}")
    build = GENERATORS[model_id]
    cases = []
    for index in range(size):
        cases.append(build(rng, index))
        progress(1)
    return Cohort(f"countersign-synthetic-{model_id}", seed, tuple(cases))
