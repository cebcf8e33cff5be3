"""Each ledger entry as a sentence a CMIO reads: one function per kind, and ``"<kind> recorded"``
for a kind this module does not know (the audit page shows the raw entry beside it either way).

A sentence says only what its entry holds: people, models, cards and patients by the references
the entry keeps (a person by the display name the entry holds, when it holds one, and always with
their role), and the free text it keeps (a governor's reason) quoted as written. Every function
takes the entry's content and the label of the model the entry is about, where the caller knows
it: a clinician's decision names only its card, whose card set names the model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

Sentence = Callable[[dict, "str | None"], str]


def describe(kind: str, content: dict, model: str | None = None) -> str:
    """The sentence of one entry; an entry its kind's function cannot read gets the fallback."""
    function = SENTENCES.get(kind)
    if function is not None:
        try:
            return function(content, model)
        except (KeyError, TypeError, ValueError, AttributeError):
            pass
    return f"{kind} recorded" + (f" ({model})" if model else "")


def readable_time(value: object) -> str:
    """``2025-03-01 14:05:09 UTC`` from an ISO date-time; anything else as it is."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _person(name: object, reference: object, role: object) -> str:
    who = str(name or reference or "someone unnamed")
    return f"{who} ({role})" if role else who


def _reason(content: dict) -> str:
    reason = content.get("reason")
    return f": reason “{reason}”" if reason else ""


def _model(content: dict) -> str:
    return f"{content['model_id']} {content['model_version']}"


def _patient(reference: object) -> str:
    text = str(reference)
    return text if "/" in text else f"Patient/{text}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


# Change control -------------------------------------------------------------------------------

#: What a governor did to a version, by the change's ``action``: the governor is the subject.
_GOVERNOR_ACTS = {
    "pause": "paused {model}",
    "resume": "resumed {model}",
    "shadow": "put {model} in shadow",
    "retire": "retired {model}",
    "activate": "activated {model}",
}
#: What happened to a version as the consequence of a promotion or a rollback: the version is the
#: subject, the governor who approved it follows.
_CONSEQUENCES = {
    "promote": "{model} became {status} {step}, promotion approved by {who}",
    "supersede": "{model} superseded {step}, promotion approved by {who}",
    "roll-back": "{model} rolled back {step} by {who}",
    "restore": "{model} restored {step} by {who}",
}


def model_status_changed(content: dict, _model_label: str | None) -> str:
    """``Dr Ama Osei (cmio) paused medication-safety 1.0.0 (active → paused): reason “…”``."""
    model = _model(content)
    who = _person(content.get("approver_name"), content.get("approver"), content.get("role"))
    status = content.get("status")
    step = f"({content.get('previous_status')} → {status})"
    action = str(content.get("action"))
    if action in _CONSEQUENCES:
        said = _CONSEQUENCES[action].format(model=model, status=status, step=step, who=who)
    elif action in _GOVERNOR_ACTS:
        said = f"{who} {_GOVERNOR_ACTS[action].format(model=model)} {step}"
    else:
        said = f"{who} changed {model} {step} by “{action}”"
    return said + _reason(content)


def _promoter(content: dict) -> str:
    return _person(content.get("by_name"), content.get("by"), content.get("role"))


def _replacing(content: dict) -> str:
    replaced = content.get("from_version")
    return f"(replacing {replaced})" if replaced else "(no version active to replace)"


def _proposal(content: dict) -> str:
    number = content.get("proposal")
    return f"proposal #{number}" if number is not None else "the proposal"


def model_promotion_proposed(content: dict, _model_label: str | None) -> str:
    """``Dr Ama Osei (cmio) proposed medication-safety 1.1.0 for active (replacing 1.0.0): …``."""
    return (
        f"{_promoter(content)} proposed {_model(content)} for active {_replacing(content)}{_reason(content)}"
    )


def model_promotion_approved(content: dict, _model_label: str | None) -> str:
    return (
        f"{_promoter(content)} approved {_proposal(content)} to promote {_model(content)} "
        f"{_replacing(content)}{_reason(content)}"
    )


def model_promotion_withdrawn(content: dict, _model_label: str | None) -> str:
    return (
        f"{_promoter(content)} withdrew {_proposal(content)} to promote {_model(content)}{_reason(content)}"
    )


def model_rolled_back(content: dict, _model_label: str | None) -> str:
    """``model_version`` is the version rolled back from; ``from_version`` the one restored."""
    restored = content.get("from_version")
    to = f" to {restored}" if restored else ", with no earlier version to restore"
    model_id, left = content["model_id"], content["model_version"]
    return f"{_promoter(content)} rolled {model_id} back from {left}{to}{_reason(content)}"


# Hook calls -----------------------------------------------------------------------------------


def _cards(content: dict) -> tuple[int, str]:
    """How many cards, and their rules (``renal-dose-limit x2, interaction``)."""
    cards = content.get("cards") or []
    rules = Counter(str(card.get("rule") or card.get("indicator") or "card") for card in cards)
    named = ", ".join(rule if count == 1 else f"{rule} x{count}" for rule, count in rules.items())
    return len(cards), f" ({named})" if named else ""


def _guardrails(content: dict) -> str:
    events = content.get("guardrails") or []
    said = [
        f"{event.get('guardrail')}" + (f" ({event['rule']})" if event.get("rule") else "")
        for event in events
        if event.get("guardrail") != "applicability"
    ]
    return f"; guardrails: {', '.join(said)}" if said else ""


def _answering(content: dict, model: str | None) -> str:
    return model or str(content.get("model") or content.get("service") or "a model")


def card_set_issued(content: dict, model: str | None) -> str:
    """``medication-safety 1.0.0 issued 2 cards (renal-dose-limit, interaction) to Practitioner/x
    for Patient/y``."""
    number, rules = _cards(content)
    user = content.get("user")
    to = f" to {user}" if user else ""
    patient = _patient(content["patient"])
    if number == 0:
        asker = f" {user}" if user else ""
        return (
            f"{_answering(content, model)} answered{asker} for {patient} with no card{_guardrails(content)}"
        )
    issued = f"issued {_count(number, 'card')}{rules}"
    return f"{_answering(content, model)} {issued}{to} for {patient}{_guardrails(content)}"


def card_set_shadow(content: dict, model: str | None) -> str:
    """``medication-safety 1.1.0 ran in shadow for Patient/y: 1 card recorded (…), not shown``."""
    number, rules = _cards(content)
    patient = _patient(content["patient"])
    recorded = f"{_count(number, 'card')} recorded{rules}, not shown" if number else "no card"
    return f"{_answering(content, model)} ran in shadow for {patient}: {recorded}{_guardrails(content)}"


_SUPPRESSED_BECAUSE = {
    "paused": "the model is paused",
    "retired": "the model is retired",
    "not-applicable": "outside its intended use",
}


def invocation_suppressed(content: dict, model: str | None) -> str:
    """``medication-safety 1.0.0 gave no card to Practitioner/x for Patient/y: the model is paused``."""
    disposition = str(content.get("disposition"))
    because = _SUPPRESSED_BECAUSE.get(disposition, disposition)
    details = [str(event["detail"]) for event in content.get("guardrails") or [] if event.get("detail")]
    if details:
        because += f" ({'; '.join(details)})"
    user = content.get("user")
    to = f" to {user}" if user else ""
    return f"{_answering(content, model)} gave no card{to} for {_patient(content['patient'])}: {because}"


# Clinicians' decisions and reviews ------------------------------------------------------------


def _card(content: dict, model: str | None) -> str:
    return f"card {content['card']}" + (f" of {model}" if model else "")


def decision_recorded(content: dict, model: str | None) -> str:
    """``Card … of medication-safety 1.0.0 overridden: reason patient-declined``. CDS Hooks feedback
    names no user, so neither does the sentence."""
    card = _card(content, model)
    outcome = content["outcome"]
    if outcome == "accepted":
        taken = len(content.get("acceptedSuggestions") or [])
        return f"Clinician accepted {card}" + (f" ({_count(taken, 'suggestion')} taken)" if taken else "")
    if outcome == "overridden":
        reason = content.get("overrideReason")
        return f"Clinician overrode {card}" + (f": reason {reason}" if reason else ", no reason given")
    return f"Clinician's decision on {card}: {outcome}"


def review_signed(content: dict, model: str | None) -> str:
    edited = "edited before signing" if content.get("edited") else "signed as drafted"
    return f"{content['reviewer']} signed the draft on {_card(content, model)} ({edited})"


def review_rejected(content: dict, model: str | None) -> str:
    return (
        f"{content['reviewer']} rejected the draft on {_card(content, model)}; nothing was written to the EHR"
    )


def safety_event_reported(content: dict, model: str | None) -> str:
    """The description stays in its table; the ledger, and so the sentence, keep codes and times."""
    return (
        f"{content['reporter']} reported safety event #{content['safety_event']}, "
        f"{content.get('severity')} {content.get('category')}, on {_card(content, model)} "
        f"for {_patient(content['patient'])} (occurred {readable_time(content.get('occurred_at'))})"
    )


# Sign-in and operations -----------------------------------------------------------------------


def _user(content: dict) -> str:
    return _person(None, content.get("fhir_user") or "an unmapped user", content.get("role"))


def _ehr(content: dict) -> str:
    ehr = content.get("ehr")
    return f" through {ehr}" if ehr else ""


def sign_in(content: dict, _model_label: str | None) -> str:
    return f"{_user(content)} signed in{_ehr(content)}"


def sign_in_refused(content: dict, _model_label: str | None) -> str:
    return f"Sign-in refused{_ehr(content) or ' (no sign-in in flight matched)'}: {content.get('reason')}"


def sign_out(content: dict, _model_label: str | None) -> str:
    return f"{_user(content)} signed out"


def session_ended(content: dict, _model_label: str | None) -> str:
    return f"Session of {_user(content)} ended: {content.get('reason')}"


def outbox_retried(content: dict, _model_label: str | None) -> str:
    messages = content.get("messages") or []
    listed = ", ".join(f"#{message}" for message in messages)
    put_back = _count(len(messages), "dead letter")
    return f"{content.get('operator') or 'An operator'} put {put_back} back in the outbox ({listed})"


SENTENCES: dict[str, Sentence] = {
    "model-status-changed": model_status_changed,
    "model-promotion-proposed": model_promotion_proposed,
    "model-promotion-approved": model_promotion_approved,
    "model-promotion-withdrawn": model_promotion_withdrawn,
    "model-rolled-back": model_rolled_back,
    "card-set-issued": card_set_issued,
    "card-set-shadow": card_set_shadow,
    "invocation-suppressed": invocation_suppressed,
    "decision-recorded": decision_recorded,
    "review-signed": review_signed,
    "review-rejected": review_rejected,
    "safety-event-reported": safety_event_reported,
    "sign-in": sign_in,
    "sign-in-refused": sign_in_refused,
    "sign-out": sign_out,
    "session-ended": session_ended,
    "outbox-retried": outbox_retried,
}
