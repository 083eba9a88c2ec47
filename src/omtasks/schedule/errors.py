"""The one exception a malformed schedule raises."""

from __future__ import annotations


class ScheduleSyntaxError(ValueError):
    """A schedule value that does not parse.

    `detail` names the bad token; `token` is that token and `position` its
    1-based character position in the value as given (0 when unknown).  The
    message is `invalid schedule '<value>': <detail>` (SPEC 4.8).
    """

    def __init__(self, value: object, detail: str, token: str = "", position: int = 0) -> None:
        self.value = value if isinstance(value, str) else _show(value)
        self.detail = detail
        self.token = _cut(token)
        self.position = position
        super().__init__(f"invalid schedule '{_cut(self.value)}': {_cut(detail, 400)}")

    @property
    def message(self) -> str:
        return str(self)


#: a longer value or token is cut in messages: an error never copies a whole file into a log
SHOWN = 200


def _cut(text: str, limit: int = SHOWN) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _show(value: object) -> str:
    import json

    try:
        return json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return _cut(object.__repr__(value))
