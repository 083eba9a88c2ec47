"""Every example of docs/configuration.md "The task environment and the shell rule" runs and prints what it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from omtest import make_root, om, write_service

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def _examples() -> list[tuple[str, str, str]]:
    text = DOC.read_text()
    section = text[text.index("## The task environment and the shell rule"):]
    section = section[: section.find("\n## ", 1)] if "\n## " in section[1:] else section
    pairs = re.findall(r"```ini\n(.*?)```\s*```text\n(.*?)```", section, re.S)
    return [(re.match(r"\[(task#\w+)\]", ini)[1], ini, out) for ini, out in pairs]


def test_the_section_has_its_examples() -> None:
    assert [rid for rid, _, _ in _examples()] == ["task#plain", "task#piped", "task#env", "task#fails"]


@pytest.mark.parametrize("rid, ini, expected", _examples(), ids=[e[0] for e in _examples()])
def test_example(tmp_path: Path, rid: str, ini: str, expected: str) -> None:
    root = make_root(tmp_path)
    write_service(root, "docs", "[DEFAULT]\nnodes = n1\n\n" + ini)
    om(root, "docs", "run", "--rid", rid)
    logs = om(root, "docs", "logs", "--rid", rid)
    assert logs.returncode == 0, logs.stderr
    output = re.compile(r" (?:INFO|ERROR) +\| (.*)$")  # a command output line of the service log
    printed = [m[1] for m in map(output.search, logs.stdout.splitlines()) if m]
    assert printed == expected.splitlines()
