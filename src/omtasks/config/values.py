"""Typed keyword values (SPEC 3.5).

Each parser takes the value text (references already expanded) and returns the
typed value, or raises ValueError whose text is the message that follows
`<keyword>: ` in a problem line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"(?:[0-9]+(?:ms|[smhdw]))+", re.IGNORECASE | re.ASCII)
_DURATION_PAIR_RE = re.compile(r"([0-9]+)(ms|[smhdw])", re.IGNORECASE | re.ASCII)
_DIGITS_RE = re.compile(r"[0-9]+", re.ASCII)
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_NODE_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?", re.ASCII)

TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})
STATUS_STATES = ("up", "down", "warn", "n/a")
REQUIRE_STATES = ("up", "down", "warn", "n/a", "undef", "stdby up", "stdby down")
DEFAULT_REQUIRE_STATES = ("up", "stdby up")
SCOPE_GROUPS = ("nodes", "drpnodes")


#: the largest duration and integer a keyword takes (docs/security.md): ten years, nine digits
MAX_DURATION = 3660 * 86400
MAX_DIGITS = 9


def _shown(text: str) -> str:
    text = text.strip()
    return text if len(text) <= 40 else f"{text[:40]}..."


def parse_duration(text: str) -> int:
    """Seconds in `text`: a bare integer (seconds) or `<int><unit>` pairs, units ms s m h d w, any case.

    Milliseconds (OpenSVC writes `20ms`) round up to whole seconds: om's clock is the second.
    """
    value = text.strip()
    if _DIGITS_RE.fullmatch(value):
        pairs = [(value, "s")]
    elif _DURATION_RE.fullmatch(value):
        pairs = _DURATION_PAIR_RE.findall(value)
    else:
        raise ValueError(f"invalid duration '{_shown(text)}'")
    if any(len(n) > MAX_DIGITS for n, _ in pairs):
        raise ValueError(f"duration '{_shown(text)}' too long (at most {MAX_DURATION // 86400} days)")
    millis = sum(int(n) for n, u in pairs if u.lower() == "ms")
    seconds = sum(int(n) * _DURATION_UNITS[u.lower()] for n, u in pairs if u.lower() != "ms") + -(-millis // 1000)
    if seconds > MAX_DURATION:
        raise ValueError(f"duration '{_shown(text)}' too long (at most {MAX_DURATION // 86400} days)")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest `<int><unit>` spelling of `seconds` (`0s` for zero), the inverse of parse_duration."""
    if seconds < 0:
        raise ValueError(f"negative duration {seconds}")
    out = []
    for unit in "wdhms":
        count, seconds = divmod(seconds, _DURATION_UNITS[unit])
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"'{text}' is not a boolean")


def parse_int(text: str, minimum: int = 0) -> int:
    value = text.strip()
    if not _DIGITS_RE.fullmatch(value):
        raise ValueError(f"'{_shown(text)}' is not an integer")
    if len(value) > MAX_DIGITS:
        raise ValueError(f"'{_shown(text)}' too large (at most {MAX_DIGITS} digits)")
    number = int(value)
    if number < minimum:
        raise ValueError(f"'{text}' must be >= {minimum}")
    return number


def parse_bounded_duration(text: str, minimum: int) -> int:
    seconds = parse_duration(text)
    if seconds < minimum:
        raise ValueError(f"'{text}' must be >= {minimum}s")
    return seconds


def parse_words(text: str) -> list[str]:
    return text.split()


def parse_word(text: str) -> str:
    words = text.split()
    if len(words) > 1:
        raise ValueError(f"'{text}' is not a single word")
    return words[0] if words else ""


def parse_choice(text: str, choices: tuple[str, ...]) -> str:
    value = text.strip()
    if value not in choices:
        raise ValueError(f"'{text}' is not {' or '.join(choices)}")
    return value


def parse_choices(text: str, choices: tuple[str, ...]) -> list[str]:
    """A word list whose words come from `choices`, duplicates dropped, order kept."""
    out: list[str] = []
    for word in text.split():
        if word not in choices:
            raise ValueError(f"'{word}' is not {' or '.join(choices)}")
        if word not in out:
            out.append(word)
    return out


_PLAIN_RE = re.compile(r"[^ \t\r\n\\'\"]+")
_DQ_PLAIN_RE = re.compile(r'[^"\\]+')
_BLANKS = " \t\r\n"


def split_words(text: str) -> list[str]:
    """`shlex.split(text)` (POSIX, no comments), in linear time.

    shlex builds each token one character at a time, which is quadratic in the
    token's length (a 1 MB command took 14 s); this scanner appends slices.
    Raises ValueError on an unterminated quote or a trailing escape.
    """
    out: list[str] = []
    buf: list[str] = []
    started = False  # a token is open (an empty quoted string is a token)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _BLANKS:
            if started:
                out.append("".join(buf))
                buf, started = [], False
            i += 1
        elif c == "\\":
            if i + 1 >= n:
                raise ValueError("No escaped character")
            buf.append(text[i + 1])
            started, i = True, i + 2
        elif c == "'":
            j = text.find("'", i + 1)
            if j < 0:
                raise ValueError("No closing quotation")
            buf.append(text[i + 1:j])
            started, i = True, j + 1
        elif c == '"':
            started, i = True, i + 1
            while True:
                if i >= n:
                    raise ValueError("No closing quotation")
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\":
                    if i + 1 >= n:
                        raise ValueError("No escaped character")
                    nxt = text[i + 1]
                    buf.append(nxt if nxt in '"\\' else c + nxt)
                    i += 2
                    continue
                m = _DQ_PLAIN_RE.match(text, i)
                buf.append(m.group(0))
                i = m.end()
        else:
            m = _PLAIN_RE.match(text, i)
            buf.append(m.group(0))
            started, i = True, m.end()
    if started:
        out.append("".join(buf))
    return out


def split_shlex(text: str) -> list[str]:
    """POSIX shlex split; an unterminated quote or trailing escape is `unbalanced quotes`."""
    try:
        return split_words(text)
    except ValueError:
        raise ValueError("unbalanced quotes") from None


def parse_command(text: str) -> str:
    """A command is kept as written; it only has to split (shell commands split too)."""
    if any(c in text for c in "'\"\\"):  # without quotes or escapes it always splits
        split_shlex(text)
    return text.strip()


def parse_environment(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in split_shlex(text):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"'{item}' has no '='")
        if not _ENV_KEY_RE.fullmatch(key):
            raise ValueError(f"'{key}' is not a valid variable name")
        env[key] = value
    return env


def parse_umask(text: str) -> int:
    value = text.strip()
    if not re.fullmatch(r"[0-7]{1,4}", value) or int(value, 8) > 0o777:
        raise ValueError(f"'{text}' is not an octal umask")
    return int(value, 8)


def parse_account(text: str) -> str:
    """A user or group name, or a numeric id; existence is checked when a run starts."""
    value = text.strip()
    if any(c.isspace() or c == ":" for c in value):
        raise ValueError(f"'{text}' is not a name or id")
    return value


def parse_path(text: str) -> str:
    """An absolute path: a relative one would depend on the directory the tick runs from."""
    value = text.strip()
    if not value.startswith("/"):
        raise ValueError(f"'{text}' is not an absolute path")
    return value


def parse_paths(text: str) -> list[str]:
    return [parse_path(word) for word in text.split()]


def parse_retcodes(text: str) -> dict[int, str]:
    """`code:state ...` with codes 0-255 and states up/down/warn/n/a."""
    codes: dict[int, str] = {}
    for pair in text.split():
        code, colon, state = pair.partition(":")
        if not colon or not _DIGITS_RE.fullmatch(code):
            raise ValueError(f"'{_shown(pair)}' is not a code:state pair")
        number = int(code) if len(code) <= MAX_DIGITS else 256
        if number > 255:
            raise ValueError(f"exit code {number} out of range 0-255")
        if state not in STATUS_STATES:
            raise ValueError(f"unknown state '{state}' in '{pair}' (expected {', '.join(STATUS_STATES)})")
        if number in codes:
            raise ValueError(f"exit code {number} listed twice")
        codes[number] = state
    return codes


def is_node_name(word: str) -> bool:
    return bool(_NODE_RE.fullmatch(word)) and word not in SCOPE_GROUPS


def parse_nodes(text: str) -> list[str]:
    """A word list of node names, duplicates dropped, order kept."""
    out: list[str] = []
    for word in text.split():
        if not is_node_name(word):
            raise ValueError(f"'{word}' is not a valid node name")
        if word not in out:
            out.append(word)
    return out


@dataclass(frozen=True)
class Requirement:
    """One `run_requires` condition: `instance` or a rid, and the states that satisfy it."""

    target: str
    states: tuple[str, ...] = DEFAULT_REQUIRE_STATES

    def __str__(self) -> str:
        return f"{self.target}({','.join(self.states)})"


_COND_RE = re.compile(r"([^()\s]+)(?:\(([^()]*)\))?", re.DOTALL)
_RID_RE = re.compile(r"[A-Za-z0-9_-]+#[A-Za-z0-9_.-]+", re.ASCII)


def _conditions(text: str) -> list[str]:
    """Split at blanks outside parentheses, so `app#0(stdby up)` stays one condition."""
    conds, depth, buf = [], 0, []
    for char in text:
        if char.isspace() and depth == 0:
            if buf:
                conds.append("".join(buf))
                buf = []
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            raise ValueError(f"unbalanced parentheses in '{text.strip()}'")
        buf.append(char)
    if depth:
        raise ValueError(f"unbalanced parentheses in '{text.strip()}'")
    if buf:
        conds.append("".join(buf))
    return conds


def parse_requires(text: str) -> list[Requirement]:
    """SPEC 5.5 grammar; whether a rid exists is checked against the whole service later."""
    out = []
    for cond in _conditions(text):
        match = _COND_RE.fullmatch(cond)
        if not match:
            raise ValueError(f"invalid condition '{cond}'")
        target, inner = match.group(1), match.group(2)
        if target != "instance" and not _RID_RE.fullmatch(target):
            raise ValueError(f"unknown resource '{target}'")
        if inner is None:
            out.append(Requirement(target))
            continue
        states: list[str] = []
        for item in inner.split(","):
            state = " ".join(item.split()).lower()
            if not state:
                raise ValueError(f"empty state in '{cond}'")
            if state not in REQUIRE_STATES:
                raise ValueError(f"unknown state '{item.strip()}' in '{cond}'")
            if state not in states:
                states.append(state)
        out.append(Requirement(target, tuple(states)))
    return out
