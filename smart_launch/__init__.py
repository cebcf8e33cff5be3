"""SMART App Launch 2.2 for Countersign's app: EHR and standalone launch, tokens, sessions, roles.

A backend-for-frontend: tokens stay in the database, the browser holds an opaque cookie. This
package knows nothing of Countersign's governance core; the host app registers its pages beside it.
"""

from smart_launch.blueprint import bp, init_app
from smart_launch.config import SmartConfig

__all__ = ["SmartConfig", "bp", "init_app"]
