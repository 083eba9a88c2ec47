"""Typed values of SPEC 3.5, tested directly on the parsers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omtasks.config import Requirement, format_duration, parse_duration
from omtasks.config import values as v


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("0", 0),
        (" 90 ", 90),
        ("1h30m", 5400),
        ("1H30M", 5400),
        ("10s", 10),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("1w", 604800),
        ("1w1d1h1m1s", 694861),
        ("30m1h", 5400),
        ("3h", 10800),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["1.5h", "", "h", "1h30", "-1", "+5", "1 h", "1h 30m", "1y", "٣", "1_000", "0x10"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == f"invalid duration '{text}'"


@given(st.integers(min_value=0, max_value=v.MAX_DURATION))
def test_duration_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
    assert parse_duration(str(seconds)) == seconds


@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from("smhdwSMHDW")), min_size=1, max_size=6))
def test_duration_pairs_sum(pairs: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{u}" for n, u in pairs)
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    total = sum(n * unit[u.lower()] for n, u in pairs)
    if total > v.MAX_DURATION:
        with pytest.raises(ValueError, match="too long"):
            parse_duration(text)
    else:
        assert parse_duration(text) == total


def test_format_duration() -> None:
    assert format_duration(0) == "0s"
    assert format_duration(5400) == "1h30m"
    assert format_duration(694861) == "1w1d1h1m1s"
    with pytest.raises(ValueError):
        format_duration(-1)


@pytest.mark.parametrize("word", ["true", "TRUE", "Yes", "on", "1"])
def test_bool_true(word: str) -> None:
    assert v.parse_bool(word) is True


@pytest.mark.parametrize("word", ["false", "False", "NO", "off", "0"])
def test_bool_false(word: str) -> None:
    assert v.parse_bool(word) is False


def test_bool_error() -> None:
    with pytest.raises(ValueError, match=r"^'maybe' is not a boolean$"):
        v.parse_bool("maybe")


def test_int() -> None:
    assert v.parse_int("12", minimum=1) == 12
    with pytest.raises(ValueError, match=r"^'0' must be >= 1$"):
        v.parse_int("0", minimum=1)
    for bad in ("1.0", "-1", "x", "1_0", "٣"):
        with pytest.raises(ValueError, match=r"is not an integer$"):
            v.parse_int(bad)


def test_bounded_duration() -> None:
    assert v.parse_bounded_duration("1m", minimum=1) == 60
    with pytest.raises(ValueError, match=r"^'0' must be >= 1s$"):
        v.parse_bounded_duration("0", minimum=1)


def test_words() -> None:
    assert v.parse_words("  a  b\tc ") == ["a", "b", "c"]
    assert v.parse_word(" x ") == "x"
    with pytest.raises(ValueError, match=r"^'a b' is not a single word$"):
        v.parse_word("a b")


def test_environment() -> None:
    assert v.parse_environment("A=1 'B=two words' C=") == {"A": "1", "B": "two words", "C": ""}
    assert v.parse_environment("X=a=b") == {"X": "a=b"}
    with pytest.raises(ValueError, match=r"^'FOO' has no '='$"):
        v.parse_environment("A=1 FOO")
    with pytest.raises(ValueError, match=r"^'1X' is not a valid variable name$"):
        v.parse_environment("1X=2")
    with pytest.raises(ValueError, match=r"^unbalanced quotes$"):
        v.parse_environment("A='x")


def test_command() -> None:
    assert v.parse_command(" awk '{print $1}' f ") == "awk '{print $1}' f"
    assert v.parse_command("a; b && c") == "a; b && c"
    for bad in ("echo 'x", 'echo "x', "echo x\\"):
        with pytest.raises(ValueError, match=r"^unbalanced quotes$"):
            v.parse_command(bad)


def test_umask() -> None:
    assert v.parse_umask("027") == 0o27
    assert v.parse_umask("0777") == 0o777
    for bad in ("089", "1000", "x", "-1", "07777"):
        with pytest.raises(ValueError, match=r"is not an octal umask$"):
            v.parse_umask(bad)


def test_account_and_path() -> None:
    assert v.parse_account("postgres") == "postgres"
    assert v.parse_account("1001") == "1001"
    with pytest.raises(ValueError, match="is not a name or id"):
        v.parse_account("a:b")
    assert v.parse_path("/srv") == "/srv"
    with pytest.raises(ValueError, match=r"^'srv' is not an absolute path$"):
        v.parse_path("srv")


def test_retcodes() -> None:
    assert v.parse_retcodes("0:up 1:up 2:n/a 3:warn 4:down") == {
        0: "up",
        1: "up",
        2: "n/a",
        3: "warn",
        4: "down",
    }
    with pytest.raises(ValueError, match=r"^'0up' is not a code:state pair$"):
        v.parse_retcodes("0up")
    with pytest.raises(ValueError, match=r"^unknown state 'ok' in '0:ok'"):
        v.parse_retcodes("0:ok")
    with pytest.raises(ValueError, match=r"^exit code 256 out of range 0-255$"):
        v.parse_retcodes("256:up")
    with pytest.raises(ValueError, match=r"^exit code 0 listed twice$"):
        v.parse_retcodes("0:up 0:down")


def test_choices() -> None:
    assert v.parse_choices("drpnodes nodes drpnodes", ("nodes", "drpnodes")) == ["drpnodes", "nodes"]
    with pytest.raises(ValueError, match=r"^'all' is not nodes or drpnodes$"):
        v.parse_choices("all", ("nodes", "drpnodes"))
    with pytest.raises(ValueError, match=r"^'active' is not failover or flex$"):
        v.parse_choice("active", ("failover", "flex"))


def test_nodes() -> None:
    assert v.parse_nodes("n1 n2.example.com n1") == ["n1", "n2.example.com"]
    for bad in ("nodes", "drpnodes", "n/1", "-n1", "n1@x"):
        with pytest.raises(ValueError, match="is not a valid node name"):
            v.parse_nodes(bad)


class TestRequires:
    def test_default_states(self) -> None:
        assert v.parse_requires("instance") == [Requirement("instance", ("up", "stdby up"))]

    def test_grammar(self) -> None:
        reqs = v.parse_requires(
            "  instance(up)   app#0(stdby up, down)  sync#1(n/a,undef,stdby down) task#a.b "
        )
        assert reqs == [
            Requirement("instance", ("up",)),
            Requirement("app#0", ("stdby up", "down")),
            Requirement("sync#1", ("n/a", "undef", "stdby down")),
            Requirement("task#a.b", ("up", "stdby up")),
        ]
        assert str(reqs[1]) == "app#0(stdby up,down)"

    def test_blanks_inside_states_are_normalised(self) -> None:
        assert v.parse_requires("app#0( stdby   up ,UP)") == [Requirement("app#0", ("stdby up", "up"))]

    def test_empty(self) -> None:
        assert v.parse_requires("   ") == []

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("instance(up", "unbalanced parentheses in 'instance(up'"),
            ("instance)up(", "unbalanced parentheses in 'instance)up('"),
            ("app#0(upp)", "unknown state 'upp' in 'app#0(upp)'"),
            ("app#0(stdby)", "unknown state 'stdby' in 'app#0(stdby)'"),
            ("app#0()", "empty state in 'app#0()'"),
            ("app#0(up,)", "empty state in 'app#0(up,)'"),
            ("app#0(up)x", "invalid condition 'app#0(up)x'"),
            ("app#0((up))", "invalid condition 'app#0((up))'"),
            ("foo", "unknown resource 'foo'"),
            ("(up)", "invalid condition '(up)'"),
        ],
    )
    def test_errors(self, text: str, message: str) -> None:
        with pytest.raises(ValueError) as info:
            v.parse_requires(text)
        assert str(info.value) == message


def test_duration_beyond_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration(str(v.MAX_DURATION + 1))
