"""The baseline: a bare Flask endpoint that returns one fixed card, served like Countersign."""

from __future__ import annotations

import uuid

from flask import Flask, jsonify, request

FIXED_CARD = {
    "uuid": str(uuid.uuid4()),
    "summary": "Fixed card",
    "indicator": "info",
    "source": {"label": "Baseline"},
}


def create_bare_app() -> Flask:
    app = Flask(__name__)

    @app.post("/cds-services/<service_id>")
    def call(service_id: str):
        request.get_data()
        return jsonify({"cards": [FIXED_CARD]})

    return app
