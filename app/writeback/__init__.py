"""Write-back: turning outbox messages into FHIR transactions and delivering them to the EHR's FHIR
server (references checked, retries, per-target circuit breaker, SMART Backend Services tokens)."""
