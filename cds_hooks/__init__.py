"""The CDS Hooks 2.0.1 protocol: discovery, service calls, prefetch, client JWT auth, cards, feedback.

A Flask blueprint that knows nothing of engines' insides: the product plugs in through
``cds_hooks.backend.CdsBackend``.
"""

from cds_hooks.blueprint import CdsHooksConfig, init_app

__all__ = ["CdsHooksConfig", "init_app"]
