"""Serving a hook call under governance: which engine serves which CDS service, and the backend that
runs it through intended use, guardrails, the ledger and the outbox."""
