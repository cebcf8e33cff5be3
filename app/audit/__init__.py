"""Durable records of what the AI said and what clinicians decided."""
