"""The synthetic cohort: 13 adults and one child, each a clinical story with a card it should
(or should not) get. Invented people; no real person's data. Generated, not stored, so the dates
stay relative to the day of loading (see ``resources.Clock``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sandbox.ehr.synthetic import resources as fhir
from sandbox.ehr.synthetic.catalogue import DRUGS, LABS, PROBLEMS

CLINICIAN_ID = "cs-dr-hale"
CLINICIAN = f"Practitioner/{CLINICIAN_ID}"
CMIO_ID = "cs-dr-osei"
CMIO = f"Practitioner/{CMIO_ID}"
SAFETY_OFFICER_ID = "cs-dr-rivera"
SAFETY_OFFICER = f"Practitioner/{SAFETY_OFFICER_ID}"


@dataclass
class Chart:
    """One patient's record under construction; each method adds one resource."""

    clock: fhir.Clock
    pid: str
    scenario: str
    resources: list[dict] = field(default_factory=list)

    def _id(self, key: str) -> str:
        return f"{self.pid}-{key}"

    def problem(self, key: str, onset_days_ago: int) -> Chart:
        problem = PROBLEMS[key]
        self.resources.append(
            fhir.condition(
                self.pid,
                self._id(key),
                problem.snomed,
                problem.icd10,
                problem.display,
                self.clock.day(onset_days_ago),
            )
        )
        return self

    def medication(self, key: str, dose: float, per_day: int, started_days_ago: int) -> Chart:
        drug = DRUGS[key]
        self.resources.append(
            fhir.medication_request(
                self.pid,
                self._id(key),
                drug.rxnorm,
                drug.ingredient,
                drug.product,
                dose,
                per_day,
                self.clock.moment(started_days_ago),
                unit=drug.unit,
                requester=CLINICIAN,
            )
        )
        return self

    def allergy(
        self, key: str, code: tuple[str, str, str], criticality: str, reaction: tuple[str, str]
    ) -> Chart:
        self.resources.append(
            fhir.allergy(
                self.pid,
                self._id(f"allergy-{key}"),
                code,
                criticality=criticality,
                reaction=reaction,
                recorded=self.clock.day(2000),
            )
        )
        return self

    def labs(self, key: str, *results: tuple[float, int]) -> Chart:
        """``results``: (value, days ago) pairs, one Observation each."""
        test = LABS[key]
        for value, days_ago in results:
            self.resources.append(
                fhir.lab(
                    self.pid,
                    self._id(f"{key}-{days_ago}"),
                    test.loinc,
                    test.display,
                    value,
                    test.unit,
                    test.ucum,
                    self.clock.moment(days_ago, hour=8),
                )
            )
        return self

    def visit(self, reason: tuple[str, str], days_ago: int, class_code: str = "AMB") -> Chart:
        self.resources.append(
            fhir.encounter(
                self.pid,
                self._id(f"{class_code.lower()}-{days_ago}"),
                class_code,
                reason,
                self.clock.moment(days_ago, hour=10),
                self.clock.moment(days_ago, hour=12),
                practitioner=CLINICIAN,
            )
        )
        return self

    def admission(self, reason: tuple[str, str], days_ago: int, *, emergency: bool) -> Chart:
        """The current inpatient stay, in progress: the one the discharge hook is fired for."""
        self.resources.append(
            fhir.encounter(
                self.pid,
                self._id("admission"),
                "IMP",
                reason,
                self.clock.moment(days_ago, hour=14),
                None,
                emergency_admission=emergency,
                practitioner=CLINICIAN,
            )
        )
        return self


@dataclass(frozen=True)
class SyntheticPatient:
    id: str
    scenario: str
    resources: tuple[dict, ...]

    def bundle(self) -> dict:
        return fhir.transaction(list(self.resources))


ROUTINE_REVIEW = ("185389009", "Follow-up visit")
PENICILLIN = ("http://snomed.info/sct", "764146007", "Penicillin")
RASH = ("271807003", "Eruption of skin")
ANAPHYLAXIS = ("39579001", "Anaphylaxis")


def _chart(clock: fhir.Clock, pid: str, scenario: str, person: tuple[str, str, str, int, int, int]) -> Chart:
    """``person``: given, family, gender, age, birth month, birth day."""
    given, family, gender, age, month, day = person
    mrn = f"SBX-{pid.removeprefix('cs-').upper()}"
    chart = Chart(clock, pid, scenario)
    chart.resources.append(fhir.patient(pid, given, family, gender, clock.birth_date(age, month, day), mrn))
    return chart


def _renal_metformin(c: fhir.Clock) -> Chart:
    return (
        _chart(
            c,
            "cs-renal-metformin",
            "On metformin with eGFR 25. Order gabapentin 300 mg three times daily and ibuprofen: "
            "renal-dose cards (or renew metformin: contraindicated).",
            ("Margaret", "Ellison", "female", 71, 3, 14),
        )
        .problem("t2dm-ckd", 3900)
        .problem("ckd4", 420)
        .problem("hypertension", 5200)
        .problem("diabetic-neuropathy", 700)
        .medication("metformin", 500, 2, 2600)
        .medication("lisinopril", 10, 1, 4000)
        .medication("atorvastatin", 20, 1, 3000)
        .allergy("penicillin", PENICILLIN, "low", RASH)
        .labs("egfr", (41, 430), (33, 215), (25, 12))
        .labs("creatinine", (1.38, 430), (1.65, 215), (2.05, 12))
        .labs("hba1c", (7.6, 215), (7.2, 12))
        .labs("potassium", (4.9, 12))
        .visit(ROUTINE_REVIEW, 215)
        .visit(ROUTINE_REVIEW, 12)
    )


def _hba1c_gap(c: fhir.Clock) -> Chart:
    return (
        _chart(
            c,
            "cs-hba1c-gap",
            "HbA1c 8.1 % and no diabetes on the problem list: problem-list gap (type 2 diabetes).",
            ("Daniel", "Okafor", "male", 58, 7, 2),
        )
        .problem("hypertension", 1500)
        .problem("obesity", 1500)
        .medication("amlodipine", 5, 1, 1400)
        .labs("hba1c", (6.9, 300), (8.1, 20))
        .labs("glucose", (162, 20))
        .labs("egfr", (84, 20))
        .visit(ROUTINE_REVIEW, 300)
        .visit(ROUTINE_REVIEW, 20)
    )


def _levothyroxine_gap(c: fhir.Clock) -> Chart:
    return (
        _chart(
            c,
            "cs-levothyroxine-gap",
            "On levothyroxine without hypothyroidism on the problem list: problem-list gap.",
            ("Helen", "Marsh", "female", 64, 11, 23),
        )
        .problem("osteoarthritis-knee", 900)
        .medication("levothyroxine", 75, 1, 2400)
        .medication("acetaminophen", 500, 3, 800)
        .labs("tsh", (2.1, 60))
        .labs("egfr", (78, 60))
        .visit(ROUTINE_REVIEW, 60)
    )


def _ckd_gap(c: fhir.Clock) -> Chart:
    return (
        _chart(
            c,
            "cs-ckd-gap",
            "Two eGFR results below 60 more than 90 days apart and no CKD on the problem list: "
            "problem-list gap (chronic kidney disease).",
            ("Robert", "Lindqvist", "male", 69, 1, 30),
        )
        .problem("hypertension", 3000)
        .problem("hyperlipidemia", 2500)
        .medication("amlodipine", 10, 1, 2900)
        .medication("atorvastatin", 20, 1, 2400)
        .labs("egfr", (54, 400), (52, 220), (48, 25))
        .labs("uacr", (45, 25))
        .visit(ROUTINE_REVIEW, 220)
        .visit(ROUTINE_REVIEW, 25)
    )


def _discharge_high_lace(c: fhir.Clock) -> Chart:
    return (
        _chart(
            c,
            "cs-discharge-high-lace",
            "Inpatient 9 days after an emergency admission for heart failure, 3 ED visits in 6 months, "
            "Charlson 7: discharge with a high LACE index (readmission-risk card) and a summary draft.",
            ("Arthur", "Pennington", "male", 78, 5, 9),
        )
        .problem("heart-failure", 1800)
        .problem("copd", 3600)
        .problem("t2dm-ckd", 4000)
        .problem("ckd3", 900)
        .problem("atrial-fibrillation", 1200)
        .problem("old-mi", 2900)
        .medication("furosemide", 40, 2, 1700)
        .medication("metoprolol", 50, 1, 2800)
        .medication("apixaban", 5, 2, 1150)
        .medication("insulin-glargine", 20, 1, 1500)
        .medication("tiotropium", 18, 1, 3000)
        .labs("egfr", (44, 380), (42, 150), (39, 8))
        .labs("ntprobnp", (4200, 9), (2100, 2))
        .labs("hba1c", (8.4, 9))
        .labs("potassium", (4.4, 2))
        .labs("hemoglobin", (11.2, 2))
        .visit(("84114007", "Heart failure"), 150, "EMER")
        .visit(("13645005", "COPD exacerbation"), 95, "EMER")
        .visit(("267036007", "Dyspnea"), 40, "EMER")
        .admission(("84114007", "Acute on chronic heart failure"), 9, emergency=True)
    )


def _discharge_low_lace(c: fhir.Clock) -> Chart:
    return (
        _chart(
            c,
            "cs-discharge-low-lace",
            "Elective one-day stay for gallstones, no comorbidities: low LACE, no readmission card.",
            ("Priya", "Raman", "female", 45, 8, 17),
        )
        .problem("cholelithiasis", 120)
        .medication("acetaminophen", 500, 4, 1)
        .labs("egfr", (96, 30))
        .labs("hemoglobin", (13.4, 1))
        .visit(("235919008", "Cholelithiasis"), 30)
        .admission(("235919008", "Laparoscopic cholecystectomy"), 1, emergency=False)
    )


def _clean_chart(c: fhir.Clock) -> Chart:
    return (
        _chart(
            c,
            "cs-clean-chart",
            "Healthy adult, no medications or allergies, normal labs: no card on any hook "
            "(order amoxicillin: still no card).",
            ("Sofia", "Marin", "female", 36, 4, 5),
        )
        .labs("egfr", (112, 40))
        .labs("hba1c", (5.2, 40))
        .labs("tsh", (1.8, 40))
        .visit(("410620009", "Well adult examination"), 40)
    )


def _warfarin_nsaid(c: fhir.Clock) -> Chart:
    return (
        _chart(
            c,
            "cs-warfarin-nsaid",
            "On warfarin for atrial fibrillation. Order naproxen for back pain: bleeding-risk card.",
            ("George", "Adeyemi", "male", 73, 9, 12),
        )
        .problem("atrial-fibrillation", 2000)
        .problem("hypertension", 4000)
        .problem("low-back-pain", 10)
        .medication("warfarin", 5, 1, 1990)
        .medication("metoprolol", 50, 1, 1990)
        .labs("inr", (2.6, 45), (2.4, 10))
        .labs("egfr", (68, 45))
        .visit(("279039007", "Low back pain"), 10)
    )


def _penicillin_allergy(c: fhir.Clock) -> Chart:
    return (
        _chart(
            c,
            "cs-penicillin-allergy",
            "Penicillin anaphylaxis on record. Order amoxicillin: critical allergy card.",
            ("Laura", "Whitcombe", "female", 50, 2, 28),
        )
        .problem("asthma", 9000)
        .problem("pneumonia", 2)
        .medication("albuterol", 180, 4, 3000)
        .allergy("penicillin", PENICILLIN, "high", ANAPHYLAXIS)
        .labs("egfr", (92, 2))
        .visit(("385093006", "Community acquired pneumonia"), 2)
    )


def _statin_clarithromycin(c: fhir.Clock) -> Chart:
    return (
        _chart(
            c,
            "cs-statin-clarithromycin",
            "On simvastatin. Order clarithromycin: contraindicated combination (critical card).",
            ("Thomas", "Varga", "male", 66, 6, 3),
        )
        .problem("hyperlipidemia", 3300)
        .problem("pneumonia", 1)
        .medication("simvastatin", 40, 1, 3200)
        .labs("egfr", (74, 1))
        .visit(("385093006", "Community acquired pneumonia"), 1)
    )


def _metformin_moderate(c: fhir.Clock) -> Chart:
    return (
        _chart(
            c,
            "cs-metformin-moderate",
            "On metformin 2 g/day with eGFR 38. Renew metformin 1,000 mg twice daily: dose-cap card "
            "(change to 500 mg twice daily).",
            ("Ana", "Torres", "female", 62, 10, 19),
        )
        .problem("t2dm-ckd", 3000)
        .problem("ckd3b", 300)
        .problem("hypertension", 3000)
        .medication("metformin", 1000, 2, 2900)
        .medication("lisinopril", 10, 1, 2900)
        .labs("egfr", (44, 300), (38, 15))
        .labs("hba1c", (7.1, 15))
        .visit(ROUTINE_REVIEW, 300)
        .visit(ROUTINE_REVIEW, 15)
    )


def _duplicate_ppi(c: fhir.Clock) -> Chart:
    return (
        _chart(
            c,
            "cs-duplicate-ppi",
            "On omeprazole for reflux. Order pantoprazole: duplicate-therapy card.",
            ("Michael", "Osei", "male", 55, 12, 1),
        )
        .problem("gerd", 1500)
        .medication("omeprazole", 20, 1, 1400)
        .labs("egfr", (88, 100))
        .visit(("235595009", "Gastroesophageal reflux disease"), 100)
    )


def _ace_spironolactone(c: fhir.Clock) -> Chart:
    return (
        _chart(
            c,
            "cs-ace-spironolactone",
            "Heart failure on lisinopril, eGFR 58 then 55 (no CKD listed). Order spironolactone: "
            "hyperkalaemia card; patient-view: CKD problem-list gap.",
            ("Edith", "Collins", "female", 80, 1, 11),
        )
        .problem("heart-failure", 700)
        .problem("hypertension", 6000)
        .medication("lisinopril", 20, 1, 690)
        .medication("furosemide", 40, 1, 690)
        .labs("egfr", (58, 200), (55, 14))
        .labs("potassium", (5.1, 14))
        .visit(ROUTINE_REVIEW, 200)
        .visit(ROUTINE_REVIEW, 14)
    )


def _hypertension_stable(c: fhir.Clock) -> Chart:
    return (
        _chart(
            c,
            "cs-hypertension-stable",
            "Well-controlled hypertension, diagnosis listed, normal kidney function: no card.",
            ("Samuel", "Brooks", "male", 52, 3, 3),
        )
        .problem("hypertension", 1200)
        .medication("amlodipine", 5, 1, 1190)
        .labs("egfr", (91, 180), (89, 30))
        .labs("potassium", (4.2, 30))
        .visit(ROUTINE_REVIEW, 30)
    )


def _child(c: fhir.Clock) -> Chart:
    return (
        _chart(
            c,
            "cs-child-asthma",
            "8-year-old with asthma and a penicillin allergy: outside the services' intended use "
            "(adults), so ordering amoxicillin gets no card.",
            ("Noah", "Becker", "male", 8, 6, 21),
        )
        .problem("asthma", 1500)
        .medication("albuterol", 180, 2, 1400)
        .allergy("penicillin", PENICILLIN, "high", ANAPHYLAXIS)
        .visit(("195967001", "Asthma"), 3)
    )


STORIES = (
    _renal_metformin,
    _hba1c_gap,
    _levothyroxine_gap,
    _ckd_gap,
    _discharge_high_lace,
    _discharge_low_lace,
    _clean_chart,
    _warfarin_nsaid,
    _penicillin_allergy,
    _statin_clarithromycin,
    _metformin_moderate,
    _duplicate_ppi,
    _ace_spironolactone,
    _hypertension_stable,
    _child,
)


def cohort(today: date | None = None, suffix: str = "", own_staff: bool = False) -> list[SyntheticPatient]:
    """Every synthetic patient, dated relative to ``today`` (default: the real today).

    ``suffix`` is appended to every patient's id (and its resources' ids), so that tests can load
    a fresh copy of the cohort next to others on a shared FHIR server. ``own_staff``: references to
    the clinician and the CMIO get the suffix too (see ``shared_resources``), so that a run can
    delete everything it loaded without removing practitioners another run still refers to.
    """
    clock = fhir.Clock(today or date.today())
    charts = [story(clock) for story in STORIES]
    staff = [CLINICIAN, CMIO] if own_staff else []
    return [
        SyntheticPatient(
            chart.pid + suffix,
            chart.scenario,
            tuple(
                _restaffed(_renamed(r, chart.pid, chart.pid + suffix), staff, suffix) for r in chart.resources
            ),
        )
        for chart in charts
    ]


def _restaffed(resource: object, staff: list[str], suffix: str) -> object:
    """``resource`` with each reference to a member of ``staff`` pointing at their suffixed copy."""
    for reference in staff:
        resource = _renamed(resource, reference, reference + suffix)
    return resource


def _renamed(value: object, old: str, new: str) -> object:
    """``value`` with the patient's id, its resources' ids and references to it renamed."""
    if isinstance(value, dict):
        return {key: _renamed(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [_renamed(item, old, new) for item in value]
    if isinstance(value, str) and (value == old or value.startswith(f"{old}-")):
        return new + value[len(old) :]
    if value == f"Patient/{old}":
        return f"Patient/{new}"
    return value


def shared_resources(suffix: str = "") -> list[dict]:
    """Resources every chart refers to: the demo clinician, and the CMIO and the safety officer who
    govern the models (``suffix``: a run's own copies, as ``cohort(..., own_staff=True)`` refers to
    them)."""
    return [
        fhir.practitioner(CLINICIAN_ID + suffix, "Jordan", "Hale"),
        fhir.practitioner(CMIO_ID + suffix, "Ama", "Osei"),
        fhir.practitioner(SAFETY_OFFICER_ID + suffix, "Sam", "Rivera"),
    ]


def scenarios() -> dict[str, str]:
    """What each synthetic patient is for, by id prefix: the patient list shows it to demo users."""
    return {patient.id: patient.scenario for patient in cohort()}


def scenario_of(patient_id: str, known: dict[str, str]) -> str:
    """The scenario of a patient, also for a suffixed copy of the cohort."""
    return next((text for pid, text in known.items() if patient_id.startswith(pid)), "")
