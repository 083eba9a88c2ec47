"""Where om keeps its files (SPEC 2): everything lives below $OM_ROOT."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path


def om_root() -> Path:
    """$OM_ROOT, else /var/lib/om for root (or when readable), else ~/.local/share/om."""
    env = os.environ.get("OM_ROOT")
    if env:
        return Path(env)
    system = Path("/var/lib/om")
    if os.geteuid() == 0 or (system.is_dir() and os.access(system, os.R_OK | os.X_OK)):
        return system
    return Path.home() / ".local" / "share" / "om"


#: a node name: it reaches commands through {nodename} and names files under var/run
NODE_NAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?", re.ASCII)


def nodename() -> str:
    """$OM_NODENAME, else the short host name; an invalid name is an error (`om: ...`, exit 2)."""
    name = os.environ.get("OM_NODENAME") or socket.gethostname().split(".")[0]
    if not NODE_NAME_RE.fullmatch(name) or ".." in name:
        from omtasks.cli.errors import OmError

        source = "OM_NODENAME" if os.environ.get("OM_NODENAME") else "the host name"
        shown = name if len(name) <= 80 else f"{name[:80]}..."
        raise OmError(f"invalid node name {shown!r} ({source}): letters, digits, '-', '_' and '.', "
                      "at most 63 characters, starting and ending with a letter or digit", 2)
    return name


def etc_dir(root: Path | None = None) -> Path:
    return (root or om_root()) / "etc"


def service_conf_path(name: str, root: Path | None = None) -> Path:
    return etc_dir(root) / f"{name}.conf"


def node_conf_path(root: Path | None = None) -> Path:
    return etc_dir(root) / "node.conf"


def log_dir(root: Path | None = None) -> Path:
    return (root or om_root()) / "var" / "log"


def run_log_path(service: str, run_id: int, root: Path | None = None) -> Path:
    return log_dir(root) / "runs" / service / f"{run_id}.log"


def lock_dir(root: Path | None = None) -> Path:
    return (root or om_root()) / "var" / "run"


def ensure_dir(path: Path, mode: int = 0o750) -> Path:
    """Create `path` (and parents) with `mode`; nothing om creates is world-readable."""
    if not path.is_dir():
        old = os.umask(0o027)
        try:
            path.mkdir(parents=True, exist_ok=True, mode=mode)
        finally:
            os.umask(old)
    return path
