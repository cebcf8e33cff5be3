"""Medication-safety engine (offline default): renal limits, interactions, duplicates, allergies.

It reviews the draft orders of an order-select/order-sign call against the patient's latest eGFR,
active medications and documented allergies. The clinical knowledge is data
(``knowledge/medication_safety.yaml``, loaded by ``knowledge_schema``), each rule with its source;
this package only applies it: ``record`` reads the chart, ``doses`` does the dose arithmetic,
``rules`` decides which rules fire, ``cards`` words them, and ``engine`` runs them on each call.
"""

from app.engines.knowledge_schema import load_medication_knowledge
from app.engines.medication_safety.doses import daily_dose_mg
from app.engines.medication_safety.engine import MedicationSafetyEngine
from app.engines.medication_safety.record import EGFR_LOINC, latest_egfr

__all__ = [
    "EGFR_LOINC",
    "MedicationSafetyEngine",
    "daily_dose_mg",
    "latest_egfr",
    "load_medication_knowledge",
]
