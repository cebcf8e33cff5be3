"""Security of what Countersign holds: the data keys that seal secrets at rest (``countersign keys``),
signed-in SMART sessions (``countersign sessions``) and the audit of sign-ins and sign-outs."""
