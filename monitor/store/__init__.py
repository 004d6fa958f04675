"""Storage: SQLModel tables, Alembic migrations, and the Store the flow writes through."""

from monitor.store.repository import Store, StoredHit

__all__ = ["Store", "StoredHit"]
