"""``countersign provenance verify``: check the signature of every Provenance we wrote to an EHR.

Countersign's Provenances are told from the EHR's own by their delivery tag (every resource we
write has one): by the client, since HAPI FHIR does not search a tag by its system alone. Output
carries resource ids, verdicts and counts, never a resource's content.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import click
from flask import current_app
from flask.cli import with_appcontext
from joserfc.jwk import KeySet

from app.security.signing_key import signing_key
from app.settings import Settings, WriteBackServer
from app.writeback.fhir_writer import DeliveryError, FhirWriter
from cds_hooks.fhir_client import next_link
from fhir_profiles.common import DELIVERY_TAG_SYSTEM
from fhir_profiles.signature import verify

PAGE_SIZE = 100
STATUSES = ("valid", "invalid", "unsigned")


@click.group("provenance")
def provenance_group() -> None:
    """The Provenances Countersign wrote to an EHR's FHIR server, each signed with the key of
    COUNTERSIGN_SIGNING_KEY_PATH (its public half is at /jwks.json)."""


@provenance_group.command("verify")
@click.option("--fhir-url", required=True, help="Base URL of the FHIR server to read them from.")
@click.option("--patient", help="Only those with this Patient id as an entity.")
@with_appcontext
def verify_command(fhir_url: str, patient: str | None) -> None:
    """Report each of our Provenances as valid, invalid or unsigned, then the counts; exit 1 when
    any is invalid. The credentials of a COUNTERSIGN_WRITEBACK_SERVERS entry with this URL are used.
    """
    settings: Settings = current_app.config["COUNTERSIGN"]
    keys = signing_key(settings).key_set()
    counts: Counter[str] = Counter()
    try:
        for page in _pages(FhirWriter(_server(settings, fhir_url)), patient):
            _check([provenance for provenance in page if _ours(provenance)], keys, counts)
            click.echo(f"checked {counts.total()} so far", err=True)
    except DeliveryError as error:
        raise click.ClickException(f"reading {fhir_url}: {error}") from None
    click.echo(", ".join(f"{counts[status]} {status}" for status in STATUSES))
    if counts["invalid"]:
        raise SystemExit(1)


def _server(settings: Settings, url: str) -> WriteBackServer:
    configured = {server.key: server for server in settings.writeback_servers}
    return configured.get(url.rstrip("/"), WriteBackServer(base_url=url))


def _pages(writer: FhirWriter, patient: str | None) -> Iterator[list[dict]]:
    params = {"_count": str(PAGE_SIZE)}
    if patient:
        params["entity"] = f"Patient/{patient}"
    page = writer.search("Provenance", params)
    while True:
        yield [entry["resource"] for entry in page.get("entry", []) if "resource" in entry]
        url = next_link(page)
        if url is None:
            return
        page = writer.page(url)


def _ours(provenance: dict) -> bool:
    return any(tag.get("system") == DELIVERY_TAG_SYSTEM for tag in provenance.get("meta", {}).get("tag", []))


def _check(provenances: list[dict], keys: KeySet, counts: Counter[str]) -> None:
    for provenance in provenances:
        verdict = verify(provenance, keys)
        counts[verdict.status] += 1
        reason = f" ({verdict.reason})" if verdict.reason else ""
        click.echo(f"Provenance/{provenance.get('id')} {verdict.status}{reason}")
