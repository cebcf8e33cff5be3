"""The OpenAPI document describes exactly the registered routes, and the live service keeps to it:
schemathesis finds no 5xx, no undocumented status, no response that breaks its schema."""

from __future__ import annotations

import re
import tempfile

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app import create_app
from app.migrate import upgrade
from app.settings import Settings
from app.web.openapi import DOCUMENT_KEY
from tests.conftest import BASE_URL

IGNORED_METHODS = {"HEAD", "OPTIONS"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def test_every_registered_route_is_documented_and_nothing_else(client, app):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        for method in rule.methods - IGNORED_METHODS
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == routes


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory, client_jwks):
    from cds_hooks.auth import TrustedClient
    from tests.conftest import ISSUER

    database_url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'countersign.db'}"
    upgrade(database_url)
    return create_app(
        Settings(
            database_url=database_url,
            public_base_url=BASE_URL,
            trusted_clients=[TrustedClient(iss=ISSUER, jwks=client_jwks)],
            rate_limit_per_minute=10**6,
            rate_limit_burst=10**6,
            ledger_seal_in_process=True,  # as in production: /readyz fails once entries stay unsealed
        )
    )


# Collection comes before any fixture, so an app of its own gives the document: it is built from
# the URL map, which no setting changes.
DOCUMENT_APP_DIRECTORY = tempfile.TemporaryDirectory()
schema = schemathesis.openapi.from_dict(
    create_app(
        Settings(
            database_url=f"sqlite:///{DOCUMENT_APP_DIRECTORY.name}/countersign.db", public_base_url=BASE_URL
        )
    ).extensions[DOCUMENT_KEY]
)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_service_keeps_to_its_openapi_document(case, sign, fuzzed_app):
    """Bounded: 25 examples per operation, no deadline; CDS calls carry a fresh valid JWT."""
    headers = {}
    if case.path.startswith("/cds-services"):
        headers["Authorization"] = f"Bearer {sign(BASE_URL + case.formatted_path)}"
    case.call_and_validate(app=fuzzed_app, headers=headers, checks=CHECKS)
