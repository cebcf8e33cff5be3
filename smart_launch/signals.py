"""Neutral notifications of sign-in and sign-out, for whoever keeps the record (the host's audit).

``smart_launch`` says what happened in protocol terms and never learns who listens, so it stays
free of the governance core. Receivers get the Flask app as ``sender``. No argument ever carries
a token, code or state: ``session`` is a short prefix of the session's key, ``user`` the relative
``fhirUser`` (``Practitioner/…``) or None, ``iss`` the EHR's canonical FHIR base.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: A user signed in: ``iss``, ``user``, ``role`` (None when unmapped), ``session``.
signed_in = _signals.signal("smart-signed-in")

#: A sign-in callback was refused: ``iss`` (None when no authorization in flight was matched) and
#: ``reason``, a class such as "state-mismatch", "id-token-invalid", "token-exchange-failed".
sign_in_refused = _signals.signal("smart-sign-in-refused")

#: A signed-in session ended: ``iss``, ``user``, ``role``, ``session`` and ``reason`` (one of
#: ``smart_launch.sign_out.REASONS``: "sign-out" is the user's own).
session_ended = _signals.signal("smart-session-ended")
