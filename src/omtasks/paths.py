"""Where om keeps its files (SPEC 2): everything lives below $OM_ROOT."""

from __future__ import annotations

import os
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


def nodename() -> str:
    """$OM_NODENAME, else the short host name."""
    return os.environ.get("OM_NODENAME") or socket.gethostname().split(".")[0]


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
