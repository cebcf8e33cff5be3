"""Synthetic patients for the sandbox EHR, the demo and the tests (no real person's data)."""
