"""The one-line problem report shared by validation, `set`, `create` and the runner (SPEC 12)."""

from __future__ import annotations

from dataclasses import dataclass


MAX_MESSAGE = 300
MAX_NAME = 80


@dataclass(frozen=True)
class Problem:
    """One finding in a config file, rendered as one line naming file, line, section and keyword.

    `line` is 1-based; 0 means the whole file (unreadable, bad name).  An empty
    `section` or `keyword` is left out of the rendering.
    """

    severity: str  # "error" | "warning"
    path: str
    line: int
    section: str
    keyword: str
    message: str

    def __post_init__(self) -> None:
        # no problem line carries more than MAX_MESSAGE characters of a file (docs/security.md)
        if len(self.message) > MAX_MESSAGE:
            object.__setattr__(self, "message", f"{self.message[:MAX_MESSAGE]}...")
        for name in ("section", "keyword"):
            value = getattr(self, name)
            if len(value) > MAX_NAME:
                object.__setattr__(self, name, f"{value[:MAX_NAME]}...")

    def __str__(self) -> str:
        where = f"[{self.section}] " if self.section else ""
        what = f"{self.keyword}: " if self.keyword else ""
        return f"{self.severity}: {self.path}:{self.line}: {where}{what}{self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


def sort_problems(problems: list[Problem]) -> list[Problem]:
    """Order by line, keeping the discovery order of problems on one line."""
    return sorted(problems, key=lambda p: p.line)
