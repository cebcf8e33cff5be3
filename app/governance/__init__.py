"""Governance of the models: lifecycle status and change control."""
