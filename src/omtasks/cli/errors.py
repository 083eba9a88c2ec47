"""The one exception commands raise for an expected failure."""

from __future__ import annotations


class OmError(Exception):
    """Printed as `om: <message>` with exit code `code` (1 error, 2 usage)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
