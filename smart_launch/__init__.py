"""SMART on FHIR app for CMIOs and safety officers (launch, model cards, audit views).

Until the SMART app lands, the launch URL and model-card links that cards carry resolve to
plain pages, so a clinician following a link never meets a 404.
"""

from smart_launch.blueprint import bp

__all__ = ["bp"]
