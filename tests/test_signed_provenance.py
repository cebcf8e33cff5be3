"""Every Provenance Countersign writes is signed: RFC 8785 canonical JSON, a detached JWS over it,
the key from configuration and published, and ``countersign provenance verify`` reading them back
from a strict FHIR server (ours in Node, and HAPI FHIR) and catching one tampered with there."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from joserfc.jwk import ECKey, KeySet, RSAKey

from app import WORKER_KEY
from app.security.signing_key import SigningKeyUnusable, ensure_signing_key
from app.web.jwks import JWKS_PATH
from app.writeback import provenance_cli
from fhir_profiles.signature import (
    InvalidSignature,
    canonical,
    sign_detached,
    signed,
    signed_content,
    verify,
    verify_detached,
)
from tests.writeback_helpers import accept_and_apply, drain, order_sign_session, override, writeback_settings

KID = "provenance-test"
RFC_8785_SAMPLE = r"""{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
RFC_8785_SORTING = r"""{
  "\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"""
PROVENANCE = {
    "resourceType": "Provenance",
    "target": [{"reference": "RequestGroup/7"}, {"reference": "GuidanceResponse/8"}],
    "recorded": "2026-03-02T14:06:41Z",
    "agent": [{"type": {"text": "author"}, "who": {"reference": "Device/3"}}],
    "entity": [{"role": "source", "what": {"reference": "Patient/p1"}}],
}
WHEN = datetime(2026, 3, 2, 14, 7, tzinfo=UTC)


@pytest.fixture(scope="module", params=["ES384", "RS384"])
def key(request: pytest.FixtureRequest) -> ECKey | RSAKey:
    return ECKey.generate_key("P-384") if request.param == "ES384" else RSAKey.generate_key(2048)


def key_set(key: ECKey | RSAKey, kid: str = KID) -> KeySet:
    return KeySet.import_key_set({"keys": [key.as_dict(private=False, kid=kid)]})


def test_canonical_json_is_the_rfc_8785_sample():
    expected = '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    expected += r'"string":"€$\u000f\nA' + "'" + r'B\"\\\\\"/"}'
    assert canonical(json.loads(RFC_8785_SAMPLE)) == expected.encode()


def test_canonical_json_sorts_members_by_utf_16_code_units():
    ordered = list(json.loads(canonical(json.loads(RFC_8785_SORTING))).values())
    assert ordered == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]


@pytest.mark.parametrize(
    ("number", "spelled"),
    [
        (-0.0, "0"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (9007199254740992.0, "9007199254740992"),
        (295147905179352830000.0, "295147905179352830000"),
        (1e21, "1e+21"),
        (1e-6, "0.000001"),
        (9.999999999999997e-7, "9.999999999999997e-7"),
        (4.50, "4.5"),
    ],
)
def test_canonical_json_spells_numbers_as_ecmascript_does(number: float, spelled: str):
    assert canonical(number) == spelled.encode()


def test_what_the_server_assigns_and_the_signature_are_not_signed():
    assigned = PROVENANCE | {"id": "42", "meta": {"versionId": "3"}, "signature": [{"data": "x"}]}
    assert signed_content(assigned) == signed_content(PROVENANCE)
    assert b'"recorded":"2026-03-02T14:06:41Z"' in signed_content(PROVENANCE)


def test_a_detached_jws_round_trips_and_names_its_key(key):
    token = sign_detached(b"payload", key, KID)
    header, payload, signature = token.split(".")
    assert payload == "" and signature
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {
        "alg": "ES384" if key.key_type == "EC" else "RS384",
        "kid": KID,
    }
    verify_detached(token, b"payload", key_set(key))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("payload", "does not match"),
        ("other key, same kid", "does not match"),
        ("unknown kid", "not in the key set"),
        ("garbage", "malformed"),
    ],
)
def test_a_detached_jws_that_does_not_sign_the_content_is_refused(key, change: str, reason: str):
    token, payload, keys = sign_detached(b"payload", key, KID), b"payload", key_set(key)
    if change == "payload":
        payload = b"payload!"
    elif change == "other key, same kid":
        keys = key_set(ECKey.generate_key("P-384") if key.key_type == "EC" else RSAKey.generate_key(2048))
    elif change == "unknown kid":
        keys = key_set(key, "another-kid")
    else:
        token = "not.a.jws"
    with pytest.raises(InvalidSignature, match=reason):
        verify_detached(token, payload, keys)


def test_a_signed_provenance_verifies_as_a_server_hands_it_back(key):
    provenance = signed(PROVENANCE, key, KID, "Device/1", WHEN)
    [signature] = provenance["signature"]
    assert (signature["sigFormat"], signature["when"], signature["who"]) == (
        "application/jose",
        "2026-03-02T14:07:00Z",
        {"reference": "Device/1"},
    )
    assert signature["type"][0]["code"] == "1.2.840.10065.1.12.1.5"
    stored = json.loads(json.dumps(dict(reversed(provenance.items())), indent=2))
    stored |= {"id": "9", "meta": {"versionId": "1", "lastUpdated": "2026-03-02T14:07:01Z"}}
    assert verify(stored, key_set(key)).status == "valid"


def test_a_server_may_keep_or_drop_the_version_of_a_reference(key):
    """HAPI FHIR stores ``MedicationRequest/m/_history/2`` as ``MedicationRequest/m`` by default."""
    versioned = PROVENANCE | {"target": [{"reference": "MedicationRequest/m/_history/2"}]}
    stored = signed(versioned, key, KID, "Device/1", WHEN)
    stored["target"] = [{"reference": "MedicationRequest/m"}]
    assert verify(stored, key_set(key)).status == "valid"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p: p | {"recorded": "2026-03-02T14:06:42Z"},
        lambda p: p | {"target": [{"reference": "RequestGroup/70"}, *p["target"][1:]]},
        lambda p: p | {"signature": [p["signature"][0] | {"data": "not base64!"}]},
    ],
    ids=["recorded", "target", "data"],
)
def test_a_tampered_provenance_is_invalid(key, tamper):
    verdict = verify(tamper(signed(PROVENANCE, key, KID, "Device/1", WHEN)), key_set(key))
    assert verdict.status == "invalid" and verdict.reason


def test_a_provenance_without_a_jose_signature_is_unsigned(key):
    assert verify(PROVENANCE, key_set(key)).status == "unsigned"
    placeholder = PROVENANCE | {"signature": [{"type": [], "when": "2026-03-02T14:07:00Z"}]}
    assert verify(placeholder, key_set(key)).status == "unsigned"


def test_without_a_signing_key_nothing_starts(make_app):
    with pytest.raises(SigningKeyUnusable, match="COUNTERSIGN_SIGNING_KEY_PATH is not set"):
        make_app(signing_key_path=None)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"-----BEGIN PRIVATE KEY-----\nnot a key\n", "not an unencrypted PEM private key"),
        (ECKey.generate_key("P-256").as_pem(private=True), "neither an EC P-384 key"),
        (ECKey.generate_key("P-384").as_pem(private=False), "not an unencrypted PEM private key"),
    ],
    ids=["not-pem", "p-256", "public-only"],
)
def test_an_unusable_signing_key_stops_start_up_naming_the_setting(make_app, tmp_path, content, why):
    path = tmp_path / "signing-key.pem"
    path.write_bytes(content)
    with pytest.raises(SigningKeyUnusable, match=re.escape(f"COUNTERSIGN_SIGNING_KEY_PATH: {path} is {why}")):
        make_app(signing_key_path=path)


def test_the_public_key_is_published_under_its_kid(make_app, tmp_path: Path):
    path = ensure_signing_key(tmp_path / "signing-key.pem")
    client = make_app(signing_key_path=path, signing_key_id=KID).test_client()
    published = {key["kid"]: key for key in client.get(JWKS_PATH).get_json()["keys"]}
    assert published[KID]["alg"] == "ES384" and "d" not in published[KID]
    assert published[KID]["x"] == ECKey.import_key(path.read_bytes()).as_dict()["x"]


@pytest.fixture(params=["node", pytest.param("hapi", marks=pytest.mark.hapi)])
def strict_fhir(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("fhir_server" if request.param == "node" else "hapi_server")


def verify_command(app, fhir_base: str, patient_id: str):
    args = ["verify", "--fhir-url", fhir_base, "--patient", patient_id]
    return app.test_cli_runner().invoke(provenance_cli.provenance_group, args)


def tamper_on_server(fhir_base: str, provenance_id: str) -> None:
    """What someone with write access to the EHR could do: back-date the record."""
    url = f"{fhir_base}/Provenance/{provenance_id}"
    changed = requests.get(url, timeout=10).json() | {"recorded": "2000-01-01T00:00:00Z"}
    answer = requests.put(url, json=changed, headers={"Content-Type": "application/fhir+json"}, timeout=10)
    assert answer.status_code == 200, answer.text


@pytest.mark.integration
def test_verify_reads_every_provenance_back_as_valid_and_catches_one_tampered_with(
    make_app, auth, strict_fhir, monkeypatch
):
    app = make_app(**writeback_settings(strict_fhir))
    client = app.test_client()
    patient_id, capped, interaction = order_sign_session(client, auth, strict_fhir)
    accept_and_apply(client, auth, strict_fhir, capped)
    override(client, auth, interaction)
    drain(app.extensions[WORKER_KEY])
    monkeypatch.setattr(provenance_cli, "PAGE_SIZE", 2)  # three Provenances: the next link is followed

    checked = verify_command(app, strict_fhir, patient_id)
    assert checked.exit_code == 0, checked.output
    verdicts = dict(line.split(" ", 1) for line in checked.stdout.splitlines()[:-1])
    assert len(verdicts) == 3 and set(verdicts.values()) == {"valid"}
    assert checked.stdout.splitlines()[-1] == "3 valid, 0 invalid, 0 unsigned"

    tampered = sorted(verdicts)[0]
    tamper_on_server(strict_fhir, tampered.split("/")[1])
    rechecked = verify_command(app, strict_fhir, patient_id)
    assert rechecked.exit_code == 1
    assert f"{tampered} invalid (the content does not match its signature)" in rechecked.stdout
    assert rechecked.stdout.splitlines()[-1] == "2 valid, 1 invalid, 0 unsigned"
