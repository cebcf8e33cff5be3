"""The sealer built from ``COUNTERSIGN_DATA_KEYS``; without a key Countersign does not start.

Stored tokens are sealed with these keys (``smart_launch.sealing``), so a missing key is a
configuration error, not a reason to keep them in the clear. The demo and the tests supply one.
"""

from __future__ import annotations

from flask.cli import NoAppException

from app.settings import Settings
from smart_launch.sealing import Sealer

MISSING = (
    "COUNTERSIGN_DATA_KEYS is not set: Countersign seals the tokens it stores and needs a key. "
    "Generate one with `countersign keys generate` and set COUNTERSIGN_DATA_KEYS to it "
    "(comma-separated to rotate: the first key seals, every key opens)."
)


class DataKeysMissing(NoAppException):
    """No app can be built: every ``countersign`` command, ``--help`` included, says so in one line."""


def data_sealer(settings: Settings) -> Sealer:
    if not settings.data_keys:
        raise DataKeysMissing(MISSING)
    return Sealer([key.get_secret_value() for key in settings.data_keys])
