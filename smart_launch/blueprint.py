"""The SMART App Launch blueprint: launch, authorize, callback and sign-out under ``/app``.

The host application registers its own pages beside it and supplies ``base.html`` (the page
chrome these templates extend) and, in ``SmartConfig.landing``, where a signed-in user lands.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, g

from smart_launch import launch
from smart_launch.config import EXTENSION_KEY, URL_PREFIX, SmartConfig

bp = Blueprint("smart_launch", __name__, url_prefix=URL_PREFIX, template_folder="templates")
launch.register(bp)


def init_app(app: Flask, config: SmartConfig) -> None:
    """Register the launch routes; Authlib logs verifiers and tokens at DEBUG, so its loggers stay at INFO."""
    logging.getLogger("authlib").setLevel(max(logging.INFO, logging.getLogger("authlib").level))
    app.extensions[EXTENSION_KEY] = config
    app.register_blueprint(bp)
    app.context_processor(_session_context)


def _session_context() -> dict:
    return {"smart_session": g.get("smart_session")}
