"""Alembic migrations of the om database, shipped inside the package (see env.py)."""
