"""A line-oriented INI reader that keeps line numbers.

configparser cannot report the line of a key, treats `;` after a value as a
comment in some modes and interpolates `%`, so om reads its files itself:

- a line whose first non-blank character is `#` or `;` is a comment;
- `[name]` at the start of a line opens a section;
- `key = value` (split at the first `=`) sets a key; the keyword part (before
  an optional `@scope`) is lower-cased, the scope is kept as written;
- an indented non-blank line continues the value above it (joined with one
  space); a blank or comment line ends a value;
- a duplicate section is an error, the first occurrence is kept; so is a
  duplicate key, unless the caller asks for OpenSVC's rule (`last_key_wins`):
  the last one is kept, with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Entry:
    """One key of a section and where it sits in the file (1-based, `end` inclusive)."""

    key: str  # normalised: lower-cased keyword, then "@scope" as written
    keyword: str
    scope: str | None
    raw_key: str
    value: str
    line: int
    end: int


@dataclass
class Section:
    name: str
    line: int
    entries: dict[str, Entry] = field(default_factory=dict)

    @property
    def end(self) -> int:
        """Last line holding a key of this section (the header when it has none)."""
        return max((e.end for e in self.entries.values()), default=self.line)


@dataclass(frozen=True)
class IniIssue:
    """A syntax problem: `section` is "" outside any section, `keyword` "" for whole lines."""

    line: int
    section: str
    keyword: str
    message: str
    severity: str = "error"


@dataclass
class IniDocument:
    sections: dict[str, Section] = field(default_factory=dict)
    issues: list[IniIssue] = field(default_factory=list)


def split_key(raw_key: str) -> tuple[str, str | None]:
    """Split `keyword@scope` into the lower-cased keyword and the scope (None when unscoped)."""
    keyword, at, scope = raw_key.partition("@")
    return keyword.lower(), (scope if at else None)


def normalize_key(raw_key: str) -> str:
    keyword, scope = split_key(raw_key)
    return keyword if scope is None else f"{keyword}@{scope}"


def _cut(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


def is_comment(line: str) -> bool:
    return line.lstrip()[:1] in ("#", ";")


def header_name(line: str) -> str | None:
    """The section name when `line` is a section header, else None."""
    text = line.rstrip()
    if text.startswith("[") and text.endswith("]"):
        return text[1:-1].strip()
    return None


def parse_ini(text: str, *, last_key_wins: bool = False) -> IniDocument:
    """Parse `text`; never raises, syntax problems go to `.issues`."""
    doc = IniDocument()
    section: Section | None = None  # None before the first header or inside a duplicate
    section_name = ""
    current: Entry | None = None  # the entry a continuation line would extend
    parts: list[str] = []

    def close() -> None:
        nonlocal current
        if current is not None:
            current.value = " ".join(p for p in parts if p)
        current = None

    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or is_comment(line):
            close()
            continue
        if line[0] in " \t":
            if current is None:
                doc.issues.append(IniIssue(number, section_name, "", "indented line continues no key"))
            else:
                parts.append(line.strip())
                current.end = number
            continue
        close()
        name = header_name(line)
        if name is not None:
            section_name = name
            if not name:
                doc.issues.append(IniIssue(number, "", "", "empty section name"))
                section = None
            elif name in doc.sections:
                first = doc.sections[name].line
                doc.issues.append(IniIssue(number, name, "", f"duplicate section (first at line {first})"))
                section = None
            else:
                section = doc.sections[name] = Section(name, number)
            continue
        raw_key, eq, value = line.partition("=")
        raw_key = raw_key.strip()
        if not eq:
            doc.issues.append(
                # the line itself is not quoted: a misplaced file must not leak into logs
                IniIssue(number, section_name, "", "expected 'key = value' (no '=' on this line)")
            )
            continue
        if raw_key.split() != [raw_key]:  # empty, or holds a blank
            doc.issues.append(IniIssue(number, section_name, "", f"invalid key '{_cut(raw_key)}'"))
            continue
        if not section_name:
            doc.issues.append(IniIssue(number, "", raw_key, "key outside any section"))
            continue
        keyword, scope = split_key(raw_key)
        entry = Entry(normalize_key(raw_key), keyword, scope, raw_key, "", number, number)
        if section is not None:
            if entry.key in section.entries and last_key_wins:
                first = section.entries[entry.key].line
                message = f"duplicate key (first at line {first}), the last one wins"
                doc.issues.append(IniIssue(number, section_name, entry.key, message, "warning"))
                section.entries[entry.key] = entry
            elif entry.key in section.entries:
                first = section.entries[entry.key].line
                doc.issues.append(
                    IniIssue(number, section_name, entry.key, f"duplicate key (first at line {first})")
                )
            else:
                section.entries[entry.key] = entry
        current, parts = entry, [value.strip()]
    close()
    return doc
