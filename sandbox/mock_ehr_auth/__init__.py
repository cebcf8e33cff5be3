"""A mock EHR for tests and the demo: a SMART authorization server (Authlib) in front of a FHIR server.

Not part of the product. It enforces what a strict EHR enforces (registered clients and redirect
URIs, PKCE S256, ``aud``, single-use launch ids and codes, client secrets or ``private_key_jwt``
assertions checked against the client's JWKS URL, refresh-token rotation and RFC 7009 revocation,
RS384 id_tokens) and records every request so tests can assert what the app sent.
"""

from sandbox.mock_ehr_auth.app import create_mock_ehr
from sandbox.mock_ehr_auth.runner import BackgroundServer, MockEhr
from sandbox.mock_ehr_auth.state import Knobs, MockClient, MockState, MockUser

__all__ = ["BackgroundServer", "Knobs", "MockClient", "MockEhr", "MockState", "MockUser", "create_mock_ehr"]
