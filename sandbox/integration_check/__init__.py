"""``countersign integration-test``: the check an integration engineer runs against their own FHIR
R4 sandbox (HAPI or any other): load tagged test patients, run Countersign in-process against the
server, drive every hook as an EHR would, wait for the write-back, and report step by step what the
server holds, whether it validates, and whether a CMIO's searches find it.
"""
