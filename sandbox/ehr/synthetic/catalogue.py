"""Codes the synthetic charts and the sandbox EHR's order list share: drugs, labs, problems.

Drugs are coded by RxNorm ingredient (what the engines match on), with the product as text;
labs by the LOINC codes the engines read (eGFR 98979-8, HbA1c 4548-4, TSH 3016-3, ...).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Drug:
    rxnorm: str
    ingredient: str
    product: str
    unit: str = "mg"


@dataclass(frozen=True)
class LabTest:
    loinc: str
    display: str
    unit: str
    ucum: str


@dataclass(frozen=True)
class Problem:
    snomed: str
    icd10: str
    display: str


DRUGS = {
    "metformin": Drug("6809", "metformin", "metformin hydrochloride 500 MG Oral Tablet"),
    "gabapentin": Drug("25480", "gabapentin", "gabapentin 300 MG Oral Capsule"),
    "ibuprofen": Drug("5640", "ibuprofen", "ibuprofen 400 MG Oral Tablet"),
    "naproxen": Drug("7258", "naproxen", "naproxen 500 MG Oral Tablet"),
    "lisinopril": Drug("29046", "lisinopril", "lisinopril 10 MG Oral Tablet"),
    "atorvastatin": Drug("83367", "atorvastatin", "atorvastatin 20 MG Oral Tablet"),
    "simvastatin": Drug("36567", "simvastatin", "simvastatin 40 MG Oral Tablet"),
    "amlodipine": Drug("17767", "amlodipine", "amlodipine 5 MG Oral Tablet"),
    "levothyroxine": Drug("10582", "levothyroxine", "levothyroxine sodium 0.075 MG Oral Tablet", "ug"),
    "warfarin": Drug("11289", "warfarin", "warfarin sodium 5 MG Oral Tablet"),
    "apixaban": Drug("1364430", "apixaban", "apixaban 5 MG Oral Tablet"),
    "metoprolol": Drug("6918", "metoprolol", "metoprolol succinate 50 MG Extended Release Oral Tablet"),
    "furosemide": Drug("4603", "furosemide", "furosemide 40 MG Oral Tablet"),
    "spironolactone": Drug("9997", "spironolactone", "spironolactone 25 MG Oral Tablet"),
    "insulin-glargine": Drug("274783", "insulin glargine", "insulin glargine 100 UNT/ML Pen Injector", "U"),
    "tiotropium": Drug("69120", "tiotropium", "tiotropium 18 MCG Inhalation Capsule", "ug"),
    "albuterol": Drug("435", "albuterol", "albuterol 0.09 MG/ACTUAT Metered Dose Inhaler", "ug"),
    "acetaminophen": Drug("161", "acetaminophen", "acetaminophen 500 MG Oral Tablet"),
    "omeprazole": Drug("7646", "omeprazole", "omeprazole 20 MG Delayed Release Oral Capsule"),
    "pantoprazole": Drug("40790", "pantoprazole", "pantoprazole 40 MG Delayed Release Oral Tablet"),
    "amoxicillin": Drug("723", "amoxicillin", "amoxicillin 500 MG Oral Capsule"),
    "clarithromycin": Drug("21212", "clarithromycin", "clarithromycin 500 MG Oral Tablet"),
    "nitrofurantoin": Drug("7454", "nitrofurantoin", "nitrofurantoin 100 MG Oral Capsule"),
}

LABS = {
    "egfr": LabTest("98979-8", "eGFR (CKD-EPI 2021)", "mL/min/1.73m2", "mL/min/{1.73_m2}"),
    "creatinine": LabTest("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL"),
    "hba1c": LabTest("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", "%"),
    "glucose": LabTest("1558-6", "Fasting glucose [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL"),
    "tsh": LabTest("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "mIU/L", "m[IU]/L"),
    "potassium": LabTest("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L"),
    "inr": LabTest("6301-6", "INR in Platelet poor plasma by Coagulation assay", "{INR}", "{INR}"),
    "ntprobnp": LabTest("33762-6", "NT-proBNP [Mass/volume] in Serum or Plasma", "pg/mL", "pg/mL"),
    "uacr": LabTest("9318-7", "Albumin/Creatinine [Mass Ratio] in Urine", "mg/g", "mg/g"),
    "hemoglobin": LabTest("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", "g/dL"),
}

PROBLEMS = {
    "t2dm": Problem("44054006", "E11.9", "Type 2 diabetes mellitus"),
    "t2dm-ckd": Problem(
        "127013003", "E11.22", "Type 2 diabetes mellitus with diabetic chronic kidney disease"
    ),
    "diabetic-neuropathy": Problem("230572002", "E11.42", "Diabetic neuropathy"),
    "ckd3": Problem("433144002", "N18.30", "Chronic kidney disease stage 3"),
    "ckd3b": Problem("700379002", "N18.32", "Chronic kidney disease stage 3B"),
    "ckd4": Problem("431857002", "N18.4", "Chronic kidney disease stage 4"),
    "hypertension": Problem("38341003", "I10", "Essential hypertension"),
    "hyperlipidemia": Problem("55822004", "E78.5", "Hyperlipidemia"),
    "obesity": Problem("414916001", "E66.9", "Obesity"),
    "osteoarthritis-knee": Problem("239873007", "M17.9", "Osteoarthritis of knee"),
    "heart-failure": Problem("84114007", "I50.9", "Heart failure"),
    "copd": Problem("13645005", "J44.9", "Chronic obstructive pulmonary disease"),
    "atrial-fibrillation": Problem("49436004", "I48.91", "Atrial fibrillation"),
    "old-mi": Problem("1755008", "I25.2", "Old myocardial infarction"),
    "cholelithiasis": Problem("235919008", "K80.20", "Cholelithiasis"),
    "asthma": Problem("195967001", "J45.909", "Asthma"),
    "gerd": Problem("235595009", "K21.9", "Gastroesophageal reflux disease"),
    "low-back-pain": Problem("279039007", "M54.50", "Low back pain"),
    "pneumonia": Problem("385093006", "J18.9", "Community acquired pneumonia"),
}
