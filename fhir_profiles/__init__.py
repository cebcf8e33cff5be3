"""Builders for every FHIR R4 resource Countersign writes. Pure functions: no I/O."""
