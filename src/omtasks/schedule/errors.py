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
        self.token = token
        self.position = position
        super().__init__(f"invalid schedule '{self.value}': {detail}")

    @property
    def message(self) -> str:
        return str(self)


def _show(value: object) -> str:
    import json

    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
