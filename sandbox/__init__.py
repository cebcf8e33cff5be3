"""Everything that imitates a hospital, for the demo, the tests and a hospital's own integration check.

The sandbox EHR and its synthetic cohort, the mock SMART authorization server, the demo CDS client,
the launchers of the FHIR test servers (the Node server and HAPI FHIR, both in
``sandbox/fhir_servers/``), the demo, and ``countersign integration-test``. Nothing in ``app``, ``cds_hooks``,
``smart_launch`` or ``fhir_profiles`` imports this package (import-linter checks it); the
``countersign`` CLI loads it only inside the commands that need it.
"""
