"""The answer of `validate`: a verdict and the reason a person reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: str  # "allowed" | "not_allowed" | "excluded"
    reason: str
