"""node.conf (SPEC 3.7): defaults, values, and bad values that fall back to defaults."""

from __future__ import annotations

from pathlib import Path

from omtasks.config import NodeConfig, load_node_config


def _load(tmp_path: Path, text: str, mode: int = 0o640) -> tuple[NodeConfig, list[str]]:
    path = tmp_path / "node.conf"
    path.write_text(text)
    path.chmod(mode)
    config, problems = load_node_config(path)
    return config, [str(p).replace(str(path), "P") for p in problems]


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    config, problems = load_node_config(tmp_path / "node.conf")
    assert problems == []
    assert config == NodeConfig()
    assert (config.max_running, config.grace, config.node_dead_after, config.retention) == (
        6,
        60,
        600,
        400 * 86400,
    )
    assert (config.collector_url, config.collector_token, config.node_transports) == (None, None, {})
    assert not config.has_collector
    assert config.transport_for("n2") == "ssh:n2"


def test_values(tmp_path: Path) -> None:
    config, problems = _load(
        tmp_path,
        "[node]\nmax_running = 2\n[runner]\nGrace = 2m\nnode_dead_after = 5m\nretention = 30d\n"
        "[collector]\nurl = https://collector.example.com:8180/\ntoken = s3cr3t\n"
        "[nodes]\nn2 = ssh:root@n2.example.com\nn3.lan = local:/srv/n3\n",
    )
    assert problems == []
    assert (config.max_running, config.grace, config.node_dead_after, config.retention) == (
        2,
        120,
        300,
        30 * 86400,
    )
    assert (config.collector_url, config.collector_token) == ("https://collector.example.com:8180", "s3cr3t")
    assert config.has_collector
    assert config.node_transports == {"n2": "ssh:root@n2.example.com", "n3.lan": "local:/srv/n3"}
    assert config.transport_for("n3.lan") == "local:/srv/n3" and config.transport_for("n4") == "ssh:n4"


def test_a_token_others_can_read_is_reported(tmp_path: Path) -> None:
    text = "[collector]\nurl = https://c.example.com\ntoken = s3cr3t\n"
    config, problems = _load(tmp_path, text, mode=0o644)
    assert config.collector_token == "s3cr3t"  # a warning, the value is still used
    assert problems == ["warning: P:0: [collector] token: readable by others: chmod o-r P "
                        "(the token lets anyone push as this node)"]
    assert "s3cr3t" not in problems[0]
    _, problems = _load(tmp_path, "[collector]\nurl = https://c.example.com\n", mode=0o644)
    assert problems == []  # no token, nothing to protect


def test_bad_values_use_defaults(tmp_path: Path) -> None:
    config, problems = _load(
        tmp_path,
        "[node]\nmax_running = 0\n[runner]\ngrace = 1.5m\nnode_dead_after = 0\nfoo = 1\n"
        "[collector]\nurl = ftp://x\ntoken = a b\n[nodes]\nn2 = rsh:n2\nn/3 = ssh:x\n[extra]\nk = v\n"
        "max_running = 3\n",
    )
    assert config == NodeConfig()
    assert problems == [
        "error: P:2: [node] max_running: '0' must be >= 1; using the default",
        "error: P:4: [runner] grace: invalid duration '1.5m'; using the default",
        "error: P:5: [runner] node_dead_after: '0' must be >= 1s; using the default",
        "warning: P:6: [runner] foo: unknown keyword, ignored",
        "error: P:8: [collector] url: 'ftp://x' is not an http:// or https:// URL; using the default",
        "error: P:9: [collector] token: must not contain blanks; using the default",
        "error: P:11: [nodes] n2: 'rsh:n2' is not ssh:<host> or local:<absolute path prefix>; using the default",
        "error: P:12: [nodes] n/3: not a node name, ignored",
        "warning: P:13: [extra] unknown section, ignored",
    ]


def test_syntax_errors_keep_the_rest(tmp_path: Path) -> None:
    config, problems = _load(
        tmp_path, "max_running = 3\n[node]\nmax_running = 3\nmax_running = 4\n[runner]\nwhat\n"
    )
    assert config.max_running == 3
    assert problems == [
        "error: P:1: max_running: key outside any section",
        "error: P:4: [node] max_running: duplicate key (first at line 3)",
        "error: P:6: [runner] expected 'key = value' (no '=' on this line)",
    ]


def test_empty_value_is_the_default(tmp_path: Path) -> None:
    config, problems = _load(tmp_path, "[node]\nmax_running =\n[collector]\nurl =\n")
    assert problems == [] and config == NodeConfig()


def test_undecodable(tmp_path: Path) -> None:
    path = tmp_path / "node.conf"
    path.write_bytes(b"[node]\nmax_running = \xff\n")
    config, problems = load_node_config(path)
    assert config == NodeConfig()
    assert [str(p) for p in problems] == [f"error: {path}:0: not UTF-8: byte 0xff at offset 21; using defaults"]
    (tmp_path / "dir").mkdir()
    config, problems = load_node_config(tmp_path / "dir")
    assert config == NodeConfig() and "is a directory" in str(problems[0])
