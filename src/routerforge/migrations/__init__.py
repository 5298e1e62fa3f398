"""Alembic migrations of the routerforge store (shipped inside the package).

``Store`` runs ``alembic upgrade heads`` with :data:`ALEMBIC_INI` on every open. Packages that add
tables put their own revision in ``versions/`` with ``down_revision = "0001_initial"``.
"""

from __future__ import annotations

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = MIGRATIONS_DIR / "alembic.ini"

__all__ = ["ALEMBIC_INI", "MIGRATIONS_DIR"]
