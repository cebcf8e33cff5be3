"""Client assertions as a strict EHR checks them (SMART ``client-confidential-asymmetric``, RFC 7523).

The client's public keys come from the ``jwks_uri`` it registered, as most EHRs register them,
fetched for every assertion: a real EHR caches them as the JWKS's Cache-Control allows, the mock
keeps no cache so that a test sees a changed key set at once. Every failure is ``invalid_client``.
"""

from __future__ import annotations

import time

import requests
from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from sandbox.mock_ehr_auth.state import MockClient, MockState

ALGORITHMS = ["RS384", "ES384"]
MAX_LIFETIME_SECONDS = 300
JWKS_TIMEOUT_SECONDS = 5


class SmartClientAssertion(JWTBearerClientAssertion):
    """Authlib's checks (``iss`` = ``sub`` = a known client, ``aud`` the token endpoint, ``exp``, a
    ``jti``) plus SMART's: RS384 or ES384, ``typ`` JWT and a ``kid`` in the header, ``exp`` at most
    5 minutes ahead, and a ``jti`` never seen before."""

    def __init__(self, state: MockState) -> None:
        super().__init__()
        self.state = state

    def get_audiences(self) -> list[str]:
        return [f"{self.state.public_url}/token"]

    def extract_assertion(self, assertion: str) -> tuple[dict, dict]:
        header, claims = super().extract_assertion(assertion)
        if header.get("alg") not in ALGORITHMS or header.get("typ") != "JWT" or not header.get("kid"):
            raise InvalidClientError(description="an assertion needs alg RS384 or ES384, typ JWT and a kid")
        return header, claims

    def resolve_client_public_key(self, client: MockClient) -> KeySet:
        if not client.jwks_uri:
            raise InvalidClientError(description="the client registered no JWKS URL")
        try:
            response = requests.get(client.jwks_uri, timeout=JWKS_TIMEOUT_SECONDS)
            response.raise_for_status()
            return KeySet.import_key_set(response.json())
        except (requests.RequestException, ValueError, KeyError, TypeError, JoseError) as error:
            cause = type(error).__name__
            raise InvalidClientError(description=f"no JWKS from the client ({cause})") from None

    def process_assertion_claims(self, assertion: str, resolve_key: KeySet) -> dict:
        """Authlib's decode, with SMART's algorithms (joserfc's default set has neither)."""
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ALGORITHMS)
        except JoseError as error:
            raise InvalidClientError(description=error.description or error.error) from None
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: dict) -> None:
        expires = claims.get("exp")
        if isinstance(expires, int | float) and expires - time.time() > MAX_LIFETIME_SECONDS:
            raise InvalidClientError(description="the assertion's exp is more than 5 minutes ahead")
        super().verify_claims(claims)

    def validate_jti(self, claims: dict, jti: str) -> bool:
        with self.state.lock:
            seen = jti in self.state.assertion_jtis
            self.state.assertion_jtis.add(jti)
        return not seen
