"""The service catalogue: each CDS service, the hooks it answers, its prefetch, and its model."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.engines.base import Engine
from app.engines.discharge_llm import LlmDrafter
from app.engines.discharge_summary import DischargeSummaryEngine
from app.engines.medication_safety import MedicationSafetyEngine, load_medication_knowledge
from app.prompt_cards import load_prompt_cards
from app.registry import ModelCard
from app.settings import Settings
from cds_hooks.advice import CardSource
from cds_hooks.discovery import ServiceDescriptor

EGFR_CODES = ",".join(
    f"http://loinc.org|{code}" for code in ("33914-3", "48642-3", "48643-1", "62238-1", "98979-8", "69405-9")
)
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
    model = models["medication-safety"]
    medication_safety = GovernedService(
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
    discharge_summary = _discharge_summary(models["discharge-summary-draft"], base_url, settings)
    return {service.id: service for service in (medication_safety, discharge_summary)}


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
