"""Neutral notifications from the protocol layer, for whoever watches (metrics, logs).

``cds_hooks`` announces what happened in protocol terms and never learns who listens, so it
stays free of governance and operations code. Receivers get the Flask app as ``sender``.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: A client's token was refused; ``cause`` is the AuthenticationError cause (never the token).
client_rejected = _signals.signal("cds-client-rejected")

#: A service call's envelope parsed and matched a hook the service answers:
#: ``service_id``, ``hook``, ``hook_instance`` (a UUID, safe to log).
hook_called = _signals.signal("cds-hook-called")

#: A service call was answered: ``service_id``, ``hook``, ``cards`` (the card JSON shown).
hook_answered = _signals.signal("cds-hook-answered")

#: Feedback was accepted and stored: ``service_id``, ``items`` (validated FeedbackItem objects).
feedback_recorded = _signals.signal("cds-feedback-recorded")
