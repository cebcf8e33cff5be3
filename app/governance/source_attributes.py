"""The 31 ONC HTI-1 source attributes of a predictive DSI (45 CFR 170.315(b)(11)(iv)(B)).

Every model card must state all of them; each field names its paragraph so a reviewer can map
the card to the regulation (reference ai-provenance-audit §3.1).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


def _attribute(paragraph: str, wording: str) -> object:
    return Field(min_length=1, pattern=r"\S", description=wording, json_schema_extra={"hti1": paragraph})


class SourceAttributes(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    developer_name_and_contact: str = _attribute(
        "(B)(1)(i)", "Name and contact information for the intervention developer"
    )
    funding_source: str = _attribute("(B)(1)(ii)", "Funding source of the technical implementation")
    output_value: str = _attribute(
        "(B)(1)(iii)", "Description of value that the intervention produces as an output"
    )
    output_type: str = _attribute(
        "(B)(1)(iv)", "Prediction, classification, recommendation, evaluation, analysis, or other"
    )
    intended_use: str = _attribute("(B)(2)(i)", "Intended use of the intervention")
    intended_population: str = _attribute("(B)(2)(ii)", "Intended patient population(s)")
    intended_users: str = _attribute("(B)(2)(iii)", "Intended user(s)")
    decision_making_role: str = _attribute(
        "(B)(2)(iv)", "Intended decision-making role (informs, augments, replaces)"
    )
    cautioned_uses: str = _attribute(
        "(B)(3)(i)", "Tasks, situations or populations where users are cautioned against use"
    )
    known_risks_and_limitations: str = _attribute(
        "(B)(3)(ii)", "Known risks, inappropriate settings or uses, known limitations"
    )
    training_data_criteria: str = _attribute(
        "(B)(4)(i)", "Exclusion and inclusion criteria that influenced the training data"
    )
    demographic_variables_used: str = _attribute(
        "(B)(4)(ii)", "Use of the (A)(5)-(13) variables as input features"
    )
    training_demographic_representativeness: str = _attribute(
        "(B)(4)(iii)", "Demographic representativeness of training data"
    )
    training_data_relevance: str = _attribute(
        "(B)(4)(iv)", "Relevance of training data to the intended deployed setting"
    )
    fairness_approach: str = _attribute("(B)(5)(i)", "Approach taken to ensure the output is fair")
    bias_management: str = _attribute("(B)(5)(ii)", "Approaches to manage, reduce, or eliminate bias")
    external_validation_data: str = _attribute(
        "(B)(6)(i)", "Data source, setting or environment of external validation"
    )
    external_validator: str = _attribute("(B)(6)(ii)", "Party that conducted the external testing")
    external_demographic_representativeness: str = _attribute(
        "(B)(6)(iii)", "Demographic representativeness of external data"
    )
    external_validation_process: str = _attribute("(B)(6)(iv)", "Description of external validation process")
    internal_validity: str = _attribute("(B)(7)(i)", "Validity in test data from the training source")
    internal_fairness: str = _attribute("(B)(7)(ii)", "Fairness in test data from the training source")
    external_validity: str = _attribute("(B)(7)(iii)", "Validity in external data")
    external_fairness: str = _attribute("(B)(7)(iv)", "Fairness in external data")
    outcome_evaluations: str = _attribute("(B)(7)(v)", "References to evaluations of effect on outcomes")
    validity_monitoring: str = _attribute(
        "(B)(8)(i)", "Process and frequency of monitoring validity over time"
    )
    local_validity: str = _attribute("(B)(8)(ii)", "Validity of intervention in local data")
    fairness_monitoring: str = _attribute(
        "(B)(8)(iii)", "Process and frequency of monitoring fairness over time"
    )
    local_fairness: str = _attribute("(B)(8)(iv)", "Fairness of intervention in local data")
    update_process: str = _attribute(
        "(B)(9)(i)", "Process and frequency by which the intervention is updated"
    )
    correction_frequency: str = _attribute(
        "(B)(9)(ii)", "Frequency of correcting performance when validity or fairness risks are found"
    )


def paragraphs() -> dict[str, str]:
    """Field name to HTI-1 paragraph, in the regulation's order."""
    return {name: field.json_schema_extra["hti1"] for name, field in SourceAttributes.model_fields.items()}
