"""SMART on FHIR app for CMIOs and safety officers: SMART App Launch 2.2 and the app's pages.

A backend-for-frontend: tokens stay in the database, the browser holds an opaque cookie.
"""

from smart_launch.blueprint import bp, init_app
from smart_launch.config import SmartConfig

__all__ = ["SmartConfig", "bp", "init_app"]
