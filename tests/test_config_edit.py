"""`set`/`unset` editing, `--kw` parsing and atomic writes (SPEC 10, 12)."""

from __future__ import annotations

import os
import stat
import string
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omtasks.config import edit_service_text, parse_ini, parse_kw, parse_service_text, write_atomic

TEXT = (
    "# pgdb service\n"
    "[DEFAULT]\n"
    "nodes = n1 n2\n"
    "\n"
    "[task#0]\n"
    "; the backup\n"
    "command = /bin/backup \\\n"
    "    --full\n"
    "\t--quiet\n"
    "schedule = 02:00  \n"
    "# trailing comment of task#0\n"
    "\n"
    "[task#1]\n"
    "command = echo a; echo b\n"
)


def test_replace_value_with_continuations() -> None:
    out = edit_service_text(TEXT, [("task#0", "command", "/bin/backup --incr")], [])
    assert out == TEXT.replace(
        "command = /bin/backup \\\n    --full\n\t--quiet\n", "command = /bin/backup --incr\n"
    )


def test_replace_keeps_other_lines() -> None:
    out = edit_service_text(TEXT, [("task#0", "SCHEDULE", " 03:00 ")], [])
    assert out == TEXT.replace("schedule = 02:00  \n", "schedule = 03:00\n")


def test_append_at_end_of_section() -> None:
    out = edit_service_text(TEXT, [("task#0", "schedule@n2", "04:00"), ("DEFAULT", "topology", "flex")], [])
    expected = TEXT.replace("schedule = 02:00  \n", "schedule = 02:00  \nschedule@n2 = 04:00\n")
    expected = expected.replace("nodes = n1 n2\n", "nodes = n1 n2\ntopology = flex\n")
    assert out == expected


def test_append_to_empty_section_and_last_section() -> None:
    text = "[env]\n# nothing yet\n[task#1]\ncommand = x"
    out = edit_service_text(text, [("env", "a", "1"), ("task#1", "disable", "true")], [])
    assert out == "[env]\na = 1\n# nothing yet\n[task#1]\ncommand = x\ndisable = true\n"


def test_create_section() -> None:
    out = edit_service_text(TEXT, [("task#2", "command", "/bin/x"), ("task#2", "user", "pg")], [])
    assert out == TEXT + "\n[task#2]\ncommand = /bin/x\nuser = pg\n"
    assert edit_service_text("", [("DEFAULT", "nodes", "n1")], []) == "[DEFAULT]\nnodes = n1\n"
    assert edit_service_text("[a#1]\n\n", [("b#1", "k", "")], []) == "[a#1]\n\n[b#1]\nk =\n"
    assert edit_service_text("[a#1]\nk = 1", [("b#1", "k", "2")], []) == "[a#1]\nk = 1\n\n[b#1]\nk = 2\n"


def test_unset() -> None:
    out = edit_service_text(TEXT, [], [("task#0", "command"), ("task#1", "nothere"), ("task#9", "x")])
    assert out == TEXT.replace("command = /bin/backup \\\n    --full\n\t--quiet\n", "")
    assert edit_service_text(TEXT, [], [("task#1", "command")]) == TEXT.replace(
        "command = echo a; echo b\n", ""
    )


def test_unset_then_set() -> None:
    out = edit_service_text(TEXT, [("task#1", "disable", "true")], [("task#1", "disable")])
    assert out == TEXT + "disable = true\n"


def test_crlf_and_missing_final_newline() -> None:
    text = "[task#0]\r\ncommand = a\r\nuser = x"
    assert edit_service_text(text, [("task#0", "user", "y")], []) == "[task#0]\r\ncommand = a\r\nuser = y"
    assert edit_service_text(text, [("task#0", "log", "no")], []) == text + "\r\nlog = no\r\n"
    assert edit_service_text(text, [("env", "k", "v")], []) == text + "\r\n\r\n[env]\r\nk = v\r\n"


def test_scoped_keys_are_distinct() -> None:
    text = "[task#0]\nschedule = 1\nschedule@n1 = 2\n"
    assert (
        edit_service_text(text, [("task#0", "schedule@n1", "3")], [])
        == "[task#0]\nschedule = 1\nschedule@n1 = 3\n"
    )
    assert edit_service_text(text, [], [("task#0", "schedule")]) == "[task#0]\nschedule@n1 = 2\n"


def test_first_of_duplicate_sections_is_edited() -> None:
    text = "[task#0]\na = 1\n[task#0]\na = 2\n"
    assert edit_service_text(text, [("task#0", "a", "3")], []) == "[task#0]\na = 3\n[task#0]\na = 2\n"


def test_multiline_value_is_refused() -> None:
    with pytest.raises(ValueError, match="must be one line"):
        edit_service_text(TEXT, [("task#0", "command", "a\nb")], [])


def test_edited_text_validates(tmp_path: Path) -> None:
    out = edit_service_text(TEXT, [("task#0", "log", "maybe")], [])
    svc = parse_service_text(out, "p", "pgdb", "n1")
    assert [str(p) for p in svc.errors] == ["error: p:11: [task#0] log: 'maybe' is not a boolean"]


# -- property: untouched lines stay byte-identical --------------------------------------------

_VALUE_CHARS = string.ascii_letters + string.digits + " ;#{}'\"=@/_.-$|&"
_value = st.text(_VALUE_CHARS, min_size=1, max_size=20).filter(lambda s: s.strip() != "")
_continuation = _value.filter(lambda s: s.strip()[0] not in "#;")


@dataclass
class _Key:
    key: str
    lines: list[str]


@st.composite
def _documents(draw: st.DrawFn) -> list[tuple[str, list[object]]]:
    names = draw(
        st.lists(
            st.sampled_from(["DEFAULT", "env", "task#0", "task#a.b", "app#1", "sync#2"]),
            unique=True,
            max_size=4,
        )
    )
    sections = []
    for name in names:
        items: list[object] = []
        keys = draw(
            st.lists(
                st.sampled_from(["command", "schedule", "schedule@n1", "log", "user", "tags"]),
                unique=True,
                max_size=5,
            )
        )
        for key in keys:
            for _ in range(draw(st.integers(0, 2))):
                items.append(draw(st.sampled_from(["\n", "# note\n", "; other ; note\n", "   # indented\n"])))
            eol = draw(st.sampled_from(["", " ", "\t"]))
            first = f"{key}{draw(st.sampled_from([' = ', '=', ' =  ']))}{draw(_value)}{eol}\n"
            indents = st.sampled_from(["  ", "\t", "        "])
            more = [draw(indents) + draw(_continuation) + "\n" for _ in range(draw(st.integers(0, 2)))]
            items.append(_Key(key, [first, *more]))
        for _ in range(draw(st.integers(0, 2))):
            items.append(draw(st.sampled_from(["\n", "# tail\n"])))
        sections.append((name, items))
    return sections


def _render(sections: list[tuple[str, list[object]]]) -> str:
    out = []
    for name, items in sections:
        out.append(f"[{name}]\n")
        for item in items:
            out.extend(item.lines if isinstance(item, _Key) else [item])
    return "".join(out)


@settings(max_examples=300)
@given(_documents(), st.data())
def test_edit_keeps_untouched_lines(sections: list[tuple[str, list[object]]], data: st.DataObject) -> None:
    text = _render(sections)
    doc = parse_ini(text)
    assert doc.issues == []
    section_names = [name for name, _ in sections] + ["task#new"]
    section = data.draw(st.sampled_from(section_names))
    key = data.draw(st.sampled_from(["command", "schedule", "schedule@n1", "log", "timeout"]))
    value = data.draw(_value).strip()
    action = data.draw(st.sampled_from(["set", "unset"]))
    expected_sections = []
    found_section = False
    for name, items in sections:
        items = list(items)
        if name == section:
            found_section = True
            positions = [i for i, item in enumerate(items) if isinstance(item, _Key) and item.key == key]
            if action == "unset":
                items = [item for i, item in enumerate(items) if i not in positions]
            elif positions:
                items[positions[0]] = _Key(key, [f"{key} = {value}\n"])
            else:
                last = max((i for i, item in enumerate(items) if isinstance(item, _Key)), default=-1)
                items.insert(last + 1, _Key(key, [f"{key} = {value}\n"]))
        expected_sections.append((name, items))
    expected = _render(expected_sections)
    if not found_section and action == "set":
        expected += (
            "\n" if expected.strip() and not expected.endswith("\n\n") else ""
        ) + f"[{section}]\n{key} = {value}\n"
    if action == "set":
        out = edit_service_text(text, [(section, key, value)], [])
    else:
        out = edit_service_text(text, [], [(section, key)])
    assert out == expected
    if action == "set":
        assert parse_ini(out).sections[section].entries[key].value == value


@given(st.text(max_size=200), st.text(string.ascii_letters + " =", min_size=1, max_size=10))
def test_edit_of_any_text_keeps_its_prefix(text: str, value: str) -> None:
    """Whatever the text holds, appending a new section only ever adds lines after it."""
    out = edit_service_text(text, [("task#zz", "k", value)], [])
    lines = text.splitlines(keepends=True)
    if "task#zz" not in parse_ini(text).sections:
        kept = "".join(lines[:-1]) if lines else ""
        assert out.startswith(kept)
        assert parse_ini(out).sections["task#zz"].entries["k"].value == value.strip()


# -- --kw --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "parsed"),
    [
        ("task#0.schedule=09:00", ("task#0", "schedule", "09:00")),
        ("DEFAULT.nodes=n1 n2", ("DEFAULT", "nodes", "n1 n2")),
        ("env.FOO = a=b ", ("env", "foo", "a=b")),
        ("task#db.1.schedule@n1.example.com=09:00", ("task#db.1", "schedule@n1.example.com", "09:00")),
        ("task#0.Schedule@N1=", ("task#0", "schedule@N1", "")),
        ("app#a-b.timeout=1m", ("app#a-b", "timeout", "1m")),
    ],
)
def test_parse_kw_with_value(arg: str, parsed: tuple[str, str, str]) -> None:
    assert parse_kw(arg, with_value=True) == parsed


@pytest.mark.parametrize(
    "arg",
    [
        "task#0.schedule",
        "schedule=1",
        ".schedule=1",
        "task#0.=1",
        "task#0.a b=1",
        "task#0.k@=1",
        "task#.k=1",
        "nosuch.k=1",
        "=x",
    ],
)
def test_parse_kw_errors(arg: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_kw(arg, with_value=True)
    assert str(info.value) == "--kw expects SECTION.KEY=VALUE"


def test_parse_kw_without_value() -> None:
    assert parse_kw("task#0.schedule@n1", with_value=False) == ("task#0", "schedule@n1")
    assert parse_kw("sync#a.b.c.options", with_value=False) == ("sync#a.b.c", "options")
    for bad in ("task#0.schedule=1", "task#0", ""):
        with pytest.raises(ValueError) as info:
            parse_kw(bad, with_value=False)
        assert str(info.value) == "--kw expects SECTION.KEY"


# -- write_atomic ------------------------------------------------------------------------------


def test_write_atomic(tmp_path: Path) -> None:
    path = tmp_path / "svc.conf"
    write_atomic(path, "[task#0]\r\ncommand = é\n")
    assert path.read_bytes() == "[task#0]\r\ncommand = é\n".encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    inode = path.stat().st_ino
    write_atomic(path, "new\n", mode=0o600)
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_ino != inode
    assert os.listdir(tmp_path) == ["svc.conf"]


def test_write_atomic_failure_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "svc.conf", "x")
    path = tmp_path / "svc.conf"
    path.write_text("old\n")
    (tmp_path / "sub").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path / "sub", "x")
    assert sorted(os.listdir(tmp_path)) == ["sub", "svc.conf"]
    assert path.read_text() == "old\n"
