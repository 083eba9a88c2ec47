"""`{name}`, `{svcname}`, `{nodename}` and `{env.<key>}` references (SPEC 3.6).

Only these exact forms are references; any other brace text is kept, so
`awk '{print $1}'` survives.  `{env.<key>}` looks the key up lower-cased,
as INI keys are.
"""

from __future__ import annotations

import re

_REF_RE = re.compile(r"\{(name|svcname|nodename|env\.([^{}\s]+))\}")


def expand(text: str, name: str, nodename: str, env: dict[str, str] | None) -> str:
    """Replace references in `text`; `env=None` means env references are not allowed here.

    Raises ValueError (its text is the problem message) for an unresolvable reference.
    """
    if "{" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        word, key = match.group(1), match.group(2)
        if key is None:
            return nodename if word == "nodename" else name
        if env is None:
            raise ValueError(f"{match.group(0)}: [env] references are not allowed here")
        try:
            return env[key.lower()]
        except KeyError:
            raise ValueError(f"{match.group(0)}: no key '{key.lower()}' in [env]") from None

    return _REF_RE.sub(replace, text)
