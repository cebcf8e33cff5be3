"""Every module that defines a table: importing this registers them all on ``SQLModel.metadata``."""

from app.audit import ledger, outbox, tables, target_breaker
from app.governance import lifecycle
from app.review import tables as review_tables
from app.safety import events
from app.security import sign_in_audit
from app.serving import replay_guard
from smart_launch import store as smart_store

TABLE_MODULES = (
    tables,
    replay_guard,
    ledger,
    outbox,
    target_breaker,
    lifecycle,
    events,
    smart_store,
    review_tables,
    sign_in_audit,
)
