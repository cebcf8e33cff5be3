"""The service catalogue: each CDS service, the hooks it answers, its prefetch, and its model."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.engines.base import Engine
from app.engines.discharge_llm import LlmDrafter
from app.engines.discharge_summary import DischargeSummaryEngine
from app.engines.lace_knowledge import load_lace_knowledge
from app.engines.medication_safety import EGFR_LOINC, MedicationSafetyEngine, load_medication_knowledge
from app.engines.problem_list_gaps import ProblemListGapsEngine
from app.engines.problem_list_knowledge import load_problem_list_knowledge
from app.engines.readmission_lace import ReadmissionLaceEngine
from app.governance.model_card import ModelCard
from app.llm.prompt_card import load_prompt_cards
from app.settings import Settings
from cds_hooks.advice import CardSource
from cds_hooks.discovery import ServiceDescriptor

HBA1C_LOINC = ("4548-4", "17856-6")
EGFR_CODES = ",".join(f"http://loinc.org|{code}" for code in sorted(EGFR_LOINC))
PROBLEM_LIST_LAB_CODES = ",".join(f"http://loinc.org|{code}" for code in (*HBA1C_LOINC, *sorted(EGFR_LOINC)))
MEDICATION_SAFETY_PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "medications": "MedicationRequest?patient={{context.patientId}}&status=active",
    "renalFunction": f"Observation?patient={{{{context.patientId}}}}&code={EGFR_CODES}&_sort=-date",
    "allergies": "AllergyIntolerance?patient={{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
}
DISCHARGE_SUMMARY_PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "encounter": "Encounter/{{context.encounterId}}",
    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
    "procedures": "Procedure?patient={{context.patientId}}&encounter={{context.encounterId}}",
    "medications": "MedicationRequest?patient={{context.patientId}}&status=active",
    "labs": "Observation?patient={{context.patientId}}&category=laboratory&_sort=-date&_count=100",
}

PROBLEM_LIST_GAPS_PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "problems": "Condition?patient={{context.patientId}}",
    "medications": "MedicationRequest?patient={{context.patientId}}&status=active",
    "labs": f"Observation?patient={{{{context.patientId}}}}&code={PROBLEM_LIST_LAB_CODES}&_sort=-date",
}

READMISSION_RISK_PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "encounter": "Encounter/{{context.encounterId}}",
    "encounters": "Encounter?patient={{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
}


@dataclass(frozen=True)
class GovernedService:
    """A CDS service bound to the model version that answers it."""

    id: str
    hooks: tuple[str, ...]
    title: str
    description: str
    model: ModelCard
    engine: Engine
    prefetch: dict[str, str] = field(default_factory=dict)
    usage_requirements: str = ""

    def descriptors(self) -> list[ServiceDescriptor]:
        return [
            ServiceDescriptor(
                self.id, hook, self.title, self.description, self.prefetch, self.usage_requirements
            )
            for hook in self.hooks
        ]


def card_source(model: ModelCard, base_url: str, topic_code: str, topic_display: str) -> CardSource:
    """Cards name the exact model version and link to its model card (transparency)."""
    return CardSource(model.label, model.page_url(base_url), topic_code, topic_display)


def build_catalogue(
    models: dict[str, ModelCard], base_url: str, settings: Settings | None = None
) -> dict[str, GovernedService]:
    """Every service; ``settings`` configure the language model (none: every engine stays offline)."""
    services = (
        _medication_safety(models, base_url),
        _problem_list_gaps(models, base_url),
        _readmission_risk(models, base_url),
        _discharge_summary(models["discharge-summary-draft"], base_url, settings),
    )
    return {service.id: service for service in services}


def _medication_safety(models: dict[str, ModelCard], base_url: str) -> GovernedService:
    model = models["medication-safety"]
    return GovernedService(
        id="medication-safety",
        hooks=("order-select", "order-sign"),
        title="AI medication safety review",
        description=(
            "Reviews medication orders for renal dose limits (most recent eGFR), interacting pairs, "
            "duplicate therapy and documented allergies. Suggestions update or cancel the draft order; "
            "a clinician accepts or overrides each one."
        ),
        model=model,
        engine=MedicationSafetyEngine(
            card_source(model, base_url, "medication-safety", "AI medication safety"),
            load_medication_knowledge(),
        ),
        prefetch=MEDICATION_SAFETY_PREFETCH,
        usage_requirements=(
            "Needs read access to the patient's Patient, MedicationRequest, Observation (eGFR), "
            "AllergyIntolerance and Condition resources, by prefetch or fhirAuthorization."
        ),
    )


def _problem_list_gaps(models: dict[str, ModelCard], base_url: str) -> GovernedService:
    model = models["problem-list-gaps"]
    return GovernedService(
        id="problem-list-gaps",
        hooks=("patient-view",),
        title="AI problem list gaps",
        description=(
            "When a chart opens, names conditions the medications or laboratory results imply but the "
            "problem list lacks (type 2 diabetes, hypothyroidism, chronic kidney disease), with the "
            "evidence; a suggestion adds a provisional problem-list entry."
        ),
        model=model,
        engine=ProblemListGapsEngine(
            card_source(model, base_url, "problem-list-gaps", "AI problem list gaps"),
            load_problem_list_knowledge(),
        ),
        prefetch=PROBLEM_LIST_GAPS_PREFETCH,
        usage_requirements=(
            "Needs read access to the patient's Patient, Condition, MedicationRequest and Observation "
            "(HbA1c, eGFR) resources, by prefetch or fhirAuthorization."
        ),
    )


def _readmission_risk(models: dict[str, ModelCard], base_url: str) -> GovernedService:
    model = models["readmission-risk"]
    return GovernedService(
        id="readmission-risk",
        hooks=("encounter-discharge",),
        title="AI readmission risk (LACE)",
        description=(
            "At discharge, computes the LACE index (length of stay, acuity, Charlson comorbidity, "
            "emergency visits in 6 months); at 10 or more, proposes a follow-up visit within 7 days."
        ),
        model=model,
        engine=ReadmissionLaceEngine(
            card_source(model, base_url, "readmission-risk", "AI readmission risk"),
            load_lace_knowledge(),
        ),
        prefetch=READMISSION_RISK_PREFETCH,
        usage_requirements=(
            "Needs read access to the patient's Patient, Encounter (the discharge and prior emergency "
            "visits) and Condition resources, by prefetch or fhirAuthorization."
        ),
    )


def _discharge_summary(model: ModelCard, base_url: str, settings: Settings | None) -> GovernedService:
    prompt = load_prompt_cards()["discharge-summary"]
    drafter = LlmDrafter.from_settings(settings, prompt) if settings is not None else None
    return GovernedService(
        id="discharge-summary-draft",
        hooks=("encounter-discharge",),
        title="AI discharge summary draft",
        description=(
            "Drafts a discharge summary from the encounter, diagnoses, procedures, active medications "
            "and recent results, each sentence citing its source; a private language model when "
            "configured (de-identified input), otherwise an offline extractive summariser. The draft "
            "is a preliminary DocumentReference a clinician reviews, edits and signs."
        ),
        model=model,
        engine=DischargeSummaryEngine(
            card_source(model, base_url, "discharge-summary-draft", "AI discharge summary draft"), drafter
        ),
        prefetch=DISCHARGE_SUMMARY_PREFETCH,
        usage_requirements=(
            "Needs read access to the patient's Patient, Encounter, Condition, Procedure, "
            "MedicationRequest and laboratory Observation resources, by prefetch or fhirAuthorization."
        ),
    )
