"""Alembic migrations of Countersign's schema; run by ``countersign db upgrade``."""
