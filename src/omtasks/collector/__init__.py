"""The collector: the server that stores every node's pushes (SPEC 9).

This package's `__init__` stays import-light (the node side reads `KINDS`
from it); the server (`app`) and its database (`store`) import Starlette and
SQLAlchemy only when used.
"""

from __future__ import annotations

#: push kinds and their payloads (SPEC 9); anything else is refused with 400
KINDS = frozenset({"status", "resinfo", "config", "compliance"})

__all__ = ["KINDS"]
