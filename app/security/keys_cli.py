"""``countersign keys``: a fresh data key, and re-sealing every stored secret under the first key.

Rotation: put the new key first in COUNTERSIGN_DATA_KEYS, the old one after it, on every host;
run ``countersign keys rotate``; then remove the old key. Output names key ids, never keys.
"""

from __future__ import annotations

from collections import Counter

import click
from flask import current_app
from flask.cli import with_appcontext

from app.db import DATABASE_KEY
from app.security.data_keys import data_sealer
from smart_launch import rekey
from smart_launch.rekey import Outcome
from smart_launch.sealing import generate_key


@click.group("keys")
def keys_group() -> None:
    """Data keys that seal the tokens Countersign stores (COUNTERSIGN_DATA_KEYS)."""


@keys_group.command("generate")
def generate_command() -> None:
    """Print a fresh data key: 32 random bytes, base64url."""
    click.echo(generate_key())


@keys_group.command("rotate")
@with_appcontext
def rotate_command() -> None:
    """Re-seal every stored secret under the first key of COUNTERSIGN_DATA_KEYS (safe to repeat).

    Run it once every host seals with the new key; afterwards the old key can be removed. A
    secret that no configured key opens ends its session (the user launches again)."""
    engine = current_app.extensions[DATABASE_KEY]
    sealer = data_sealer(current_app.config["COUNTERSIGN"])
    outcomes: Counter[Outcome] = Counter()
    label = f"re-sealing under key {sealer.current_id}"
    with click.progressbar(length=rekey.count(engine), label=label) as bar:
        for outcome in rekey.reseal(engine, sealer):
            outcomes[outcome] += 1
            bar.update(1)
    click.echo(", ".join(f"{outcomes[outcome]} {outcome}" for outcome in Outcome))
