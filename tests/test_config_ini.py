"""The line-oriented INI reader (SPEC 3.1)."""

from __future__ import annotations

from omtasks.config import parse_ini


def test_values_comments_and_continuations() -> None:
    doc = parse_ini(
        "# leading comment\n"
        "; another\n"
        "[task#0]\n"
        "command = echo a; echo b # not a comment\n"
        "Schedule@N1 = 09:00\n"
        "environment = A=1\n"
        "    B=2\n"
        "\tC=3   \n"
        "   # indented comment ends the value\n"
        "tags=x\n"
        "\n"
        "[env]\n"
        "k =\n"
        "  v\n"
    )
    assert doc.issues == []
    task = doc.sections["task#0"]
    assert task.line == 3
    assert task.entries["command"].value == "echo a; echo b # not a comment"
    scoped = task.entries["schedule@N1"]
    assert (scoped.keyword, scoped.scope, scoped.raw_key, scoped.line) == ("schedule", "N1", "Schedule@N1", 5)
    env = task.entries["environment"]
    assert (env.value, env.line, env.end) == ("A=1 B=2 C=3", 6, 8)
    assert task.entries["tags"].value == "x"
    assert task.end == 10
    assert doc.sections["env"].entries["k"].value == "v"


def test_crlf_and_equals_in_value() -> None:
    doc = parse_ini("[DEFAULT]\r\nnodes = n1 n2\r\n[task#0]\r\ncommand = env A=B\r\n")
    assert doc.issues == []
    assert doc.sections["DEFAULT"].entries["nodes"].value == "n1 n2"
    assert doc.sections["task#0"].entries["command"].value == "env A=B"


def test_duplicates_keep_the_first() -> None:
    doc = parse_ini("[task#0]\ncommand = a\nCOMMAND = b\n[task#0]\ncommand = c\n")
    assert [(i.line, i.section, i.keyword, i.message) for i in doc.issues] == [
        (3, "task#0", "command", "duplicate key (first at line 2)"),
        (4, "task#0", "", "duplicate section (first at line 1)"),
    ]
    assert doc.sections["task#0"].entries["command"].value == "a"


def test_syntax_errors() -> None:
    doc = parse_ini("orphan = 1\n  indented\n[]\n[task#0]\njust words\nbad key = 1\n= 2\n")
    assert [(i.line, i.section, i.keyword, i.message) for i in doc.issues] == [
        (1, "", "orphan", "key outside any section"),
        (2, "", "", "indented line continues no key"),
        (3, "", "", "empty section name"),
        (5, "task#0", "", "expected 'key = value' (no '=' on this line)"),
        (6, "task#0", "", "invalid key 'bad key'"),
        (7, "task#0", "", "invalid key ''"),
    ]


def test_blank_line_ends_a_value() -> None:
    doc = parse_ini("[task#0]\ncommand = a\n\n  b\n")
    assert [i.message for i in doc.issues] == ["indented line continues no key"]
    assert doc.sections["task#0"].entries["command"].value == "a"
