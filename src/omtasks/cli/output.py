"""Output formats shared by the commands: the SPEC 10 table and the `--format json` document.

Kept free of heavy imports so any command can use it without slowing `om --help`.
"""

from __future__ import annotations

import json
from typing import Any

FORMATS = ("text", "json")


def table(headers: list[str], rows: list[list[str | None]]) -> str:
    """Render a SPEC 10 table: upper-case header, columns padded and separated by two spaces.

    None and empty cells print as `-`, so every column of every row holds a
    word and the output stays easy to parse with `awk`.  The last column is not
    padded, so lines carry no trailing blanks.  Returns the text without a
    final newline (the header alone when there are no rows).
    """
    cells = [[h.upper() for h in headers]] + [[c if c else "-" for c in row] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join([c.ljust(w) for c, w in zip(line[:-1], widths[:-1], strict=True)] + [line[-1]])
        for line in cells
    )


def dump_json(obj: Any) -> str:
    """The one JSON document a `--format json` command prints: indented, UTF-8 kept as is."""
    return json.dumps(obj, indent=2, ensure_ascii=False)
