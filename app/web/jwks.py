"""Our public keys, one JWK Set for every key of ours that others verify: the key that signs every
Provenance Countersign writes, and the SMART client's ``private_key_jwt`` keys (the ``jwks_uri`` an
EHR registers for us).

``/jwks.json`` is a JWK Set (RFC 7517 §5); ``/jwks.json/<kid>`` the one key a signature's JWS
header names, 404 for a ``kid`` that is not ours. Public, like any JWKS: it holds no secret (keys
go out as ``as_dict(private=False)``).
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Blueprint, Flask, Response, current_app, jsonify
from joserfc.jwk import Key

from app.security.signing_key import ProvenanceKey
from cds_hooks.errors import outcome_response

bp = Blueprint("jwks", __name__)
KEY_SET = "provenance_key_set"
JWKS_PATH = "/jwks.json"
#: SMART asks a client's JWKS for a Cache-Control header; an hour lets an EHR cache it, and a key
#: published ahead of a rotation is seen in time.
CACHE_CONTROL = "public, max-age=3600"


@bp.get(JWKS_PATH)
def key_set() -> Response:
    response = jsonify(current_app.extensions[KEY_SET])
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response


@bp.get(f"{JWKS_PATH}/<kid>")
def key(kid: str) -> Response:
    for jwk in current_app.extensions[KEY_SET]["keys"]:
        if jwk["kid"] == kid:
            return jsonify(jwk)
    return outcome_response(404, "no key with this kid")


def init_app(app: Flask, signing: ProvenanceKey, client_keys: Iterable[Key] = ()) -> None:
    """A ``kid`` published twice would make the set ambiguous, so start-up stops."""
    keys = [signing.public_jwk(), *(key.as_dict(private=False) for key in client_keys)]
    kids = [key["kid"] for key in keys]
    if len(set(kids)) != len(kids):
        raise ValueError(f"a key id is published twice in {JWKS_PATH}: {sorted(kids)}")
    app.extensions[KEY_SET] = {"keys": keys}
    app.register_blueprint(bp)
