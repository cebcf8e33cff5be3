"""The sandbox EHR: a small EHR and CDS Hooks client for the demo and the browser tests.

``create_app`` is its own application factory; it shares nothing with Countersign's app but the
protocol helpers, and reaches Countersign only over HTTP, as a hospital's EHR would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from sandbox.ehr.card_store import CardStore
from sandbox.ehr.cds_client import CdsClient, ClientIdentity
from sandbox.ehr.fhir_store import FhirStore
from sandbox.ehr.launcher import SmartLauncher
from sandbox.ehr.synthetic.cohort import CLINICIAN
from sandbox.ehr.views import EHR_KEY, bp
from sandbox.ehr.workflow import SandboxEhr

STATIC_FOLDER = Path(__file__).resolve().parents[2] / "static" / "sandbox_ehr"


@dataclass(frozen=True)
class SandboxConfig:
    fhir_base_url: str
    cds_services_url: str
    identity: ClientIdentity
    user_id: str = CLINICIAN
    launcher: SmartLauncher | None = None


def create_app(config: SandboxConfig) -> Flask:
    app = Flask(__name__, static_folder=str(STATIC_FOLDER), static_url_path="/static")
    store = FhirStore(config.fhir_base_url)
    cds = CdsClient(config.cds_services_url, config.identity, config.fhir_base_url)
    app.extensions[EHR_KEY] = SandboxEhr(store, cds, CardStore(), config.user_id)
    app.config["SANDBOX_EHR"] = config
    app.register_blueprint(bp)
    return app
