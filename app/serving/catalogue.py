"""The service catalogue: each CDS service, the hooks it answers, its prefetch, and the model versions
that may answer it (one engine per version; which one answers is change control's decision)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import cached_property
from pathlib import Path

from app.engines.base import Engine
from app.engines.discharge_llm import LlmDrafter
from app.engines.discharge_summary import DischargeSummaryEngine
from app.engines.external import ExternalModelEngine
from app.engines.lace_knowledge import load_lace_knowledge
from app.engines.medication_safety import EGFR_LOINC, MedicationSafetyEngine, load_medication_knowledge
from app.engines.problem_list_gaps import ProblemListGapsEngine
from app.engines.problem_list_knowledge import load_problem_list_knowledge
from app.engines.readmission_lace import ReadmissionLaceEngine
from app.files.validated import InvalidFile
from app.governance.model_card import CARDS_DIRECTORY, ModelCard, ModelRegistry, load_model_cards
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


REPOSITORY = Path(__file__).resolve().parents[2]
EngineFactory = Callable[[ModelCard, CardSource, "Settings | None"], Engine]


@dataclass(frozen=True)
class ServedVersion:
    """One model version and the engine that runs it."""

    model: ModelCard
    engine: Engine


@dataclass(frozen=True)
class ServiceDefinition:
    """What a built-in service is, apart from its versions: a card's id picks its definition."""

    id: str
    hooks: tuple[str, ...]
    title: str
    description: str
    topic_display: str
    prefetch: dict[str, str]
    usage_requirements: str
    engine: EngineFactory | None
    """None for a service of the hospital's own: every version then declares an endpoint."""


@dataclass(frozen=True)
class GovernedService:
    """A CDS service bound to every version of its model; it prefetches what every version needs."""

    definition: ServiceDefinition
    versions: dict[str, ServedVersion]
    prefetch: dict[str, str]

    @property
    def id(self) -> str:
        return self.definition.id

    @cached_property
    def models(self) -> list[ModelCard]:
        """Built once, not per hook call (the service is immutable)."""
        return [served.model for served in self.versions.values()]

    @cached_property
    def override_window(self) -> timedelta:
        """How far back an override suppresses a card: the longest any version's policy asks."""
        return timedelta(hours=max(model.policy.override_suppression_hours for model in self.models))

    def descriptors(self) -> list[ServiceDescriptor]:
        service = self.definition
        return [
            ServiceDescriptor(
                service.id,
                hook,
                service.title,
                service.description,
                self.prefetch,
                service.usage_requirements,
            )
            for hook in service.hooks
        ]

    def with_version(
        self, version: str, engine: Engine | None = None, model: ModelCard | None = None
    ) -> GovernedService:
        """This service with ``version``'s engine or card replaced (tests and benchmarks)."""
        served = self.versions[version]
        replaced = ServedVersion(model or served.model, engine or served.engine)
        return replace(self, versions=self.versions | {version: replaced})


def card_source(model: ModelCard, base_url: str, topic_code: str, topic_display: str) -> CardSource:
    """Cards name the exact model version, say when the hospital serves it itself, and link to its
    model card (transparency)."""
    label = f"{model.label} (external model)" if model.external else model.label
    return CardSource(label, model.page_url(base_url), topic_code, topic_display)


def knowledge_path(model: ModelCard) -> Path | None:
    """The card's knowledge file (a repository path), else the engine's shipped default."""
    return REPOSITORY / model.knowledge_base if model.knowledge_base else None


def launch_url(base_url: str) -> str:
    """Where a card's SMART link launches the app."""
    return f"{base_url}/app/launch"


def load_catalogue(settings: Settings) -> tuple[ModelRegistry, dict[str, GovernedService]]:
    """The model cards (shipped and the hospital's own) and the services they serve."""
    registry = load_model_cards(CARDS_DIRECTORY, settings.model_cards_dir)
    return registry, build_catalogue(registry, settings.base_url, settings)


def build_catalogue(
    registry: ModelRegistry, base_url: str, settings: Settings | None = None
) -> dict[str, GovernedService]:
    """Every service with every version of its model; ``settings`` configure the language model
    (none: every engine stays offline). A model id no built-in service has is a service of the
    hospital's own, defined by its cards."""
    definitions = {definition.id: definition for definition in SERVICES}
    return {
        model_id: _service(
            definitions.get(model_id) or _own_service(registry, model_id), registry, base_url, settings
        )
        for model_id in registry.ids()
    }


def _service(
    definition: ServiceDefinition, registry: ModelRegistry, base_url: str, settings: Settings | None
) -> GovernedService:
    versions = {}
    prefetch = dict(definition.prefetch)
    for model in registry.versions(definition.id):
        source = card_source(model, base_url, definition.id, definition.topic_display)
        versions[model.version] = ServedVersion(model, _engine(definition, model, source, settings))
        if model.endpoint is not None:
            prefetch = _merged_prefetch(prefetch, model)
    return GovernedService(definition, versions, prefetch)


def _engine(
    definition: ServiceDefinition, model: ModelCard, source: CardSource, settings: Settings | None
) -> Engine:
    if model.endpoint is not None:
        return ExternalModelEngine(model.endpoint, source)
    if definition.engine is None:
        raise InvalidFile(
            f"{model.key}: endpoint: {model.id} is no built-in service, so it needs an endpoint"
        )
    return definition.engine(model, source, settings)


def _merged_prefetch(prefetch: dict[str, str], model: ModelCard) -> dict[str, str]:
    """The service asks for what every version needs; one key cannot mean two queries."""
    for key, template in model.endpoint.prefetch.items():
        if prefetch.setdefault(key, template) != template:
            raise InvalidFile(
                f"{model.key}: endpoint.prefetch.{key}: the service already prefetches {key!r} "
                f"as {prefetch[key]!r}; use another key"
            )
    return prefetch


def _own_service(registry: ModelRegistry, model_id: str) -> ServiceDefinition:
    """A service for the hospital's own model: hooks from its policy, text from its newest card."""
    model = registry.versions(model_id)[-1]
    return ServiceDefinition(
        id=model_id,
        hooks=model.policy.hooks,
        title=model.name,
        description=model.intended_use,
        topic_display=model.name,
        prefetch={},
        usage_requirements=f"Needs read access to what {model.key}'s endpoint.prefetch names.",
        engine=None,
    )


def _medication_safety(model: ModelCard, source: CardSource, _settings: Settings | None) -> Engine:
    return MedicationSafetyEngine(source, load_medication_knowledge(knowledge_path(model)))


def _problem_list_gaps(model: ModelCard, source: CardSource, _settings: Settings | None) -> Engine:
    return ProblemListGapsEngine(source, load_problem_list_knowledge(knowledge_path(model)))


def _readmission_risk(model: ModelCard, source: CardSource, _settings: Settings | None) -> Engine:
    return ReadmissionLaceEngine(source, load_lace_knowledge(knowledge_path(model)))


def _discharge_summary(_model: ModelCard, source: CardSource, settings: Settings | None) -> Engine:
    prompt = load_prompt_cards()["discharge-summary"]
    drafter = LlmDrafter.from_settings(settings, prompt) if settings is not None else None
    return DischargeSummaryEngine(source, drafter)


SERVICES = (
    ServiceDefinition(
        id="medication-safety",
        hooks=("order-select", "order-sign"),
        title="AI medication safety review",
        description=(
            "Reviews medication orders for renal dose limits (most recent eGFR), interacting pairs, "
            "duplicate therapy and documented allergies. Suggestions update or cancel the draft order; "
            "a clinician accepts or overrides each one."
        ),
        topic_display="AI medication safety",
        prefetch=MEDICATION_SAFETY_PREFETCH,
        usage_requirements=(
            "Needs read access to the patient's Patient, MedicationRequest, Observation (eGFR), "
            "AllergyIntolerance and Condition resources, by prefetch or fhirAuthorization."
        ),
        engine=_medication_safety,
    ),
    ServiceDefinition(
        id="problem-list-gaps",
        hooks=("patient-view",),
        title="AI problem list gaps",
        description=(
            "When a chart opens, names conditions the medications or laboratory results imply but the "
            "problem list lacks (type 2 diabetes, hypothyroidism, chronic kidney disease), with the "
            "evidence; a suggestion adds a provisional problem-list entry."
        ),
        topic_display="AI problem list gaps",
        prefetch=PROBLEM_LIST_GAPS_PREFETCH,
        usage_requirements=(
            "Needs read access to the patient's Patient, Condition, MedicationRequest and Observation "
            "(HbA1c, eGFR) resources, by prefetch or fhirAuthorization."
        ),
        engine=_problem_list_gaps,
    ),
    ServiceDefinition(
        id="readmission-risk",
        hooks=("encounter-discharge",),
        title="AI readmission risk (LACE)",
        description=(
            "At discharge, computes the LACE index (length of stay, acuity, Charlson comorbidity, "
            "emergency visits in 6 months); at 10 or more, proposes a follow-up visit within 7 days."
        ),
        topic_display="AI readmission risk",
        prefetch=READMISSION_RISK_PREFETCH,
        usage_requirements=(
            "Needs read access to the patient's Patient, Encounter (the discharge and prior emergency "
            "visits) and Condition resources, by prefetch or fhirAuthorization."
        ),
        engine=_readmission_risk,
    ),
    ServiceDefinition(
        id="discharge-summary-draft",
        hooks=("encounter-discharge",),
        title="AI discharge summary draft",
        description=(
            "Drafts a discharge summary from the encounter, diagnoses, procedures, active medications "
            "and recent results, each sentence citing its source; a private language model when "
            "configured (de-identified input), otherwise an offline extractive summariser. The draft "
            "is a preliminary DocumentReference a clinician reviews, edits and signs."
        ),
        topic_display="AI discharge summary draft",
        prefetch=DISCHARGE_SUMMARY_PREFETCH,
        usage_requirements=(
            "Needs read access to the patient's Patient, Encounter, Condition, Procedure, "
            "MedicationRequest and laboratory Observation resources, by prefetch or fhirAuthorization."
        ),
        engine=_discharge_summary,
    ),
)
