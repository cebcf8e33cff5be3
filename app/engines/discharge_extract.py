"""What a discharge summary is drafted from, and the offline extractive summariser.

The inputs are chosen once (the encounter, active diagnoses, procedures, active medications and
the latest result of each laboratory test) and serve both the language model and the offline
draft, which states each structured item as one sentence citing the resource it came from.
It needs no network and no weights, and invents nothing: every word is the record's or a template's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.engines.base import PatientData
from app.engines.discharge_draft import Section, Sentence, SummaryDraft

VOID = frozenset({"entered-in-error", "cancelled", "not-done", "stopped"})
INACTIVE_CONDITION = frozenset({"inactive", "resolved", "remission"})
RESULT_STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})
MAX_CONDITIONS, MAX_PROCEDURES, MAX_MEDICATIONS, MAX_RESULTS = 15, 15, 20, 10


@dataclass(frozen=True)
class DischargeInputs:
    patient: dict | None
    encounter: dict
    conditions: tuple[dict, ...]
    procedures: tuple[dict, ...]
    medications: tuple[dict, ...]
    results: tuple[dict, ...]

    def resources(self) -> list[dict]:
        """Everything the draft may use (and the only resources a model ever sees)."""
        first = [self.patient] if self.patient is not None else []
        return [*first, self.encounter, *self.conditions, *self.procedures, *self.medications, *self.results]

    @property
    def references(self) -> tuple[str, ...]:
        return tuple(reference(r) for r in self.resources())


def select_inputs(data: PatientData) -> DischargeInputs | None:
    """None when there is no encounter to summarise (the prefetch reads the hook's encounter)."""
    encounters = data.of_type("Encounter")
    if not encounters:
        return None
    conditions = [c for c in data.of_type("Condition") if _current_condition(c)]
    procedures = [p for p in data.of_type("Procedure") if p.get("status") not in VOID]
    medications = [m for m in data.of_type("MedicationRequest") if m.get("status") == "active"]
    return DischargeInputs(
        patient=data.patient,
        encounter=encounters[0],
        conditions=tuple(conditions[:MAX_CONDITIONS]),
        procedures=tuple(procedures[:MAX_PROCEDURES]),
        medications=tuple(medications[:MAX_MEDICATIONS]),
        results=_latest_results(data.of_type("Observation")),
    )


def extractive_draft(inputs: DischargeInputs) -> SummaryDraft:
    sections = [
        Section(title="Encounter", sentences=_encounter_sentences(inputs.encounter)),
        _section("Diagnoses", inputs.conditions, _condition_sentence),
        _section("Procedures", inputs.procedures, _procedure_sentence),
        _section("Medications at discharge", inputs.medications, _medication_sentence),
        _section("Recent results", inputs.results, _result_sentence),
    ]
    return SummaryDraft(sections=[s for s in sections if s is not None])


def describe(resource: dict) -> str:
    """A short label of a resource for the card's evidence list, from coded data only."""
    kind = resource.get("resourceType", "")
    if kind == "Encounter":
        return f"encounter from {_day(_period(resource).get('start')) or 'unknown date'}"
    if kind == "Patient":
        return "patient demographics (age, sex)"
    if kind == "MedicationRequest":
        return f"active medication: {medication_name(resource)}"
    return f"{kind}: {concept_name(resource.get('code'))}"


# Sentences


def _encounter_sentences(encounter: dict) -> list[Sentence]:
    period = _period(encounter)
    ref = [reference(encounter)]
    setting = encounter.get("class")
    display = setting.get("display") or setting.get("code") if isinstance(setting, dict) else None
    stay = f" ({display})" if isinstance(display, str) else ""
    start, end = _day(period.get("start")), _day(period.get("end"))
    sentences = [Sentence(text=f"Admitted on {start or 'an unrecorded date'}{stay}.", sources=ref)]
    reasons = [concept_name(r) for r in encounter.get("reasonCode") or () if isinstance(r, dict)]
    if reasons:
        sentences.append(Sentence(text=f"Reason for admission: {'; '.join(reasons)}.", sources=ref))
    if end:
        sentences.append(Sentence(text=f"Discharged on {end}.", sources=ref))
    disposition = (encounter.get("hospitalization") or {}).get("dischargeDisposition")
    if isinstance(disposition, dict):
        sentences.append(Sentence(text=f"Discharge disposition: {concept_name(disposition)}.", sources=ref))
    return sentences


def _condition_sentence(condition: dict) -> str:
    onset = _day(condition.get("onsetDateTime") or (condition.get("onsetPeriod") or {}).get("start"))
    return f"{concept_name(condition.get('code'))}" + (f", onset {onset}." if onset else ".")


def _procedure_sentence(procedure: dict) -> str:
    when = _day(procedure.get("performedDateTime") or (procedure.get("performedPeriod") or {}).get("start"))
    return f"{concept_name(procedure.get('code'))}" + (f" on {when}." if when else ".")


def _medication_sentence(request: dict) -> str:
    dosages = [d.get("text") for d in request.get("dosageInstruction") or () if isinstance(d, dict)]
    dosage = "; ".join(t for t in dosages if isinstance(t, str))
    return f"{medication_name(request)}" + (f": {dosage}." if dosage else ".")


def _result_sentence(observation: dict) -> str:
    quantity = observation.get("valueQuantity") or {}
    if "value" in quantity:
        value = f"{quantity['value']:g} {quantity.get('unit') or quantity.get('code') or ''}".strip()
    else:
        value = observation.get("valueString") or concept_name(observation.get("valueCodeableConcept"), "")
    flags = [concept_name(i, "") for i in observation.get("interpretation") or () if isinstance(i, dict)]
    flag = f", {', '.join(f for f in flags if f)}" if any(flags) else ""
    when = _day(_observed(observation))
    return f"{concept_name(observation.get('code'))}: {value or 'no value'}{flag}" + (
        f" on {when}." if when else "."
    )


def _section(title: str, resources: tuple[dict, ...], sentence: Callable[[dict], str]) -> Section | None:
    if not resources:
        return None
    sentences = [Sentence(text=sentence(r), sources=[reference(r)]) for r in resources]
    return Section(title=title, sentences=sentences)


# Reading the record


def _current_condition(condition: dict) -> bool:
    clinical = _first_code(condition.get("clinicalStatus"))
    verification = _first_code(condition.get("verificationStatus"))
    return clinical not in INACTIVE_CONDITION and verification not in ("refuted", "entered-in-error")


def _latest_results(observations: list[dict]) -> tuple[dict, ...]:
    """The most recent result of each test, newest first."""
    latest: dict[str, dict] = {}
    for observation in observations:
        if observation.get("status") not in RESULT_STATUSES:
            continue
        key = concept_name(observation.get("code"))
        if key not in latest or (_observed(observation) or "") > (_observed(latest[key]) or ""):
            latest[key] = observation
    ordered = sorted(latest.values(), key=lambda o: _observed(o) or "", reverse=True)
    return tuple(ordered[:MAX_RESULTS])


def _observed(observation: dict) -> str | None:
    period = observation.get("effectivePeriod") or {}
    value = observation.get("effectiveDateTime") or period.get("end") or period.get("start")
    return value or observation.get("issued")


def _period(encounter: dict) -> dict:
    period = encounter.get("period")
    return period if isinstance(period, dict) else {}


def _day(moment: object) -> str | None:
    return moment[:10] if isinstance(moment, str) and len(moment) >= 10 else None


def _first_code(concept: object) -> str | None:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    first = codings[0] if isinstance(codings, list) and codings and isinstance(codings[0], dict) else {}
    return first.get("code")


def concept_name(concept: object, unknown: str = "unnamed") -> str:
    """The concept's text, else its first display, else its first code."""
    if not isinstance(concept, dict):
        return unknown
    if isinstance(concept.get("text"), str) and concept["text"].strip():
        return concept["text"].strip()
    codings = [c for c in concept.get("coding") or () if isinstance(c, dict)]
    for field in ("display", "code"):
        found = next((c[field] for c in codings if isinstance(c.get(field), str)), None)
        if found:
            return found
    return unknown


def medication_name(request: dict) -> str:
    concept = request.get("medicationCodeableConcept")
    if isinstance(concept, dict):
        return concept_name(concept)
    display = (request.get("medicationReference") or {}).get("display")
    return display if isinstance(display, str) else "unnamed medication"


def reference(resource: dict) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"
