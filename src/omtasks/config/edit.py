"""Edit a service file in place of `om SVC set/unset/enable/disable`, keeping untouched lines byte for byte."""

from __future__ import annotations

import re

from .ini import normalize_key, parse_ini

_KEY_RE = re.compile(r"[A-Za-z0-9_-]+(@[A-Za-z0-9_.-]+)?", re.ASCII)
_SECTION_RE = re.compile(r"DEFAULT|env|[A-Za-z0-9_-]+#[A-Za-z0-9_.-]+", re.ASCII)


def parse_kw(arg: str, *, with_value: bool) -> tuple[str, ...]:
    """Split a `--kw` argument: `S.K=V` -> (S, K, V) with `with_value`, `S.K` -> (S, K) without.

    Section ids and node names (scopes) may contain dots, keywords never do and
    sections never contain `@`.  So the key is what follows the last `.` before
    the first `@`: `task#db.1.schedule@n1.example.com=09:00` is section
    `task#db.1`, key `schedule@n1.example.com`.  The value is everything after
    the first `=` (it may itself contain `=` or be empty); surrounding blanks
    are dropped, as the INI reader drops them.
    """
    usage = "--kw expects SECTION.KEY=VALUE" if with_value else "--kw expects SECTION.KEY"
    lhs, eq, value = arg.partition("=")
    if eq != ("=" if with_value else ""):
        raise ValueError(usage)
    head, at, scope = lhs.strip().partition("@")
    section, dot, keyword = head.rpartition(".")
    key = f"{keyword}{at}{scope}"
    if not dot or not _SECTION_RE.fullmatch(section) or not _KEY_RE.fullmatch(key):
        raise ValueError(usage)
    key = normalize_key(key)
    return (section, key, value.strip()) if with_value else (section, key)


def _has_break(line: str) -> bool:
    return line.splitlines() != [line]


def _newline(lines: list[str]) -> str:
    """The file's own line ending (of its first line), so an edit does not mix styles."""
    for line in lines:
        for ending in ("\r\n", "\n", "\r"):
            if line.endswith(ending):
                return ending
    return "\n"


def _key_line(key: str, value: str, newline: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"value of '{key}' must be one line")
    value = value.strip()
    return f"{key} = {value}{newline}" if value else f"{key} ={newline}"


def _ensure_final_newline(lines: list[str], newline: str) -> None:
    if lines and not _has_break(lines[-1]):
        lines[-1] += newline


def _set(lines: list[str], section: str, key: str, value: str) -> list[str]:
    key = normalize_key(key)
    newline = _newline(lines)
    new = _key_line(key, value, newline)
    sect = parse_ini("".join(lines)).sections.get(section)
    if sect is None:
        _ensure_final_newline(lines, newline)
        block = [f"[{section}]{newline}", new]
        if lines and lines[-1].strip():
            block.insert(0, newline)
        return lines + block
    entry = sect.entries.get(key)
    if entry is not None:
        end = entry.end
        if end == len(lines) and not _has_break(lines[end - 1]):
            new = new[: -len(newline)]  # the file had no final newline: keep it that way
        return lines[: entry.line - 1] + [new] + lines[end:]
    at = sect.end
    if at == len(lines):
        _ensure_final_newline(lines, newline)
    return lines[:at] + [new] + lines[at:]


def _unset(lines: list[str], section: str, key: str) -> list[str]:
    sect = parse_ini("".join(lines)).sections.get(section)
    entry = sect.entries.get(normalize_key(key)) if sect else None
    if entry is None:
        return lines
    return lines[: entry.line - 1] + lines[entry.end :]


def edit_service_text(text: str, sets: list[tuple[str, str, str]], unsets: list[tuple[str, str]]) -> str:
    """Apply `unsets`, then `sets` (so a key in both ends up set), and return the new text.

    Lines outside the edited keys are kept byte for byte.  `set` replaces a
    key's lines (continuation lines included) with one `key = value` line, or
    appends it after the last key of its section, or appends the section at the
    end of the file.  Unsetting an absent key changes nothing.  In a file with
    a duplicate section, the first one is edited.
    """
    lines = text.splitlines(keepends=True)
    for section, key in unsets:
        lines = _unset(lines, section, key)
    for section, key, value in sets:
        lines = _set(lines, section, key, value)
    return "".join(lines)
