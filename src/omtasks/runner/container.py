"""OpenSVC container resources seen through the container CLI (docker or podman).

om never starts or stops a `[container#N]`: it only asks the CLI for its state
(`<cli> inspect --format {{.State.Status}} <name>`), the contract every
docker-compatible CLI keeps.  A `[task#x] type = docker|podman|oci` becomes a
`<cli> run` argument list, built here, executed without a shell.  An `[fs#N]`
is up when its `mnt` is a mount point of this node.

Probes run child processes, and no database transaction may span one, so
callers `prefetch` the states a task's requirements need before opening their
transaction; `observed` then answers from that short-lived cache.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time

PROBE_TIMEOUT = 10.0
CACHE_SECONDS = 30.0
_cache: dict[tuple[str, str], tuple[float, str, str | None]] = {}


def cli_for(kind: str) -> str | None:
    """The CLI of a container `type` (docker, podman, oci: podman when installed, as OpenSVC), found on PATH."""
    if kind == "oci":
        return shutil.which("podman") or shutil.which("docker")
    return shutil.which(kind)


def container_name(service: str, rid: str, section: dict[str, str]) -> str:
    """The `name` keyword, else OpenSVC's default `<service>.<family>.<id>` (root namespace)."""
    return section.get("name", "").strip() or f"{service}.{rid.replace('#', '.')}"


def _section_kind(section: dict[str, str]) -> str:
    kind = section.get("type", "").strip()
    return kind if kind in ("docker", "podman") else "oci"  # OpenSVC's container default is oci


def run_argv(service_cfg, task, run_id: int) -> list[str]:
    """`<cli> run ...` for a container task, in OpenSVC's argument order; ValueError when it cannot be built."""
    cli = cli_for(task.type)
    if cli is None:
        raise ValueError(f"{'podman or docker' if task.type == 'oci' else task.type}: command not found")
    name = container_name(service_cfg.name, task.rid, {"name": task.name})
    if task.max_parallel > 1:
        name = f"{name}.{run_id}"  # concurrent runs need distinct names (OpenSVC appends its pid)
    args = [cli, "run", *shlex.split(task.run_args), f"--name={name}",
            f"--label=com.opensvc.name={service_cfg.name}", f"--label=com.opensvc.rid={task.rid}"]
    if task.entrypoint:
        args += ["--entrypoint", task.entrypoint]
    args.append(_namespace("--net", task.netns, service_cfg) if task.netns else "--net=none")
    if task.pidns:
        args.append(_namespace("--pid", task.pidns, service_cfg))
    if task.user:
        args += ["--user", task.user]
    if task.privileged:
        args.append("--privileged")
    if task.interactive:
        args.append("--interactive")
    if task.tty:
        args.append("--tty")
    if task.rm:
        args.append("--rm")
    args += [f"--volume={v}" for v in task.volume_mounts]
    for key, value in task.environment.items():
        args += ["-e", f"{key}={value}"]
    args.append(task.image)
    args += shlex.split(task.command)
    return args


def _namespace(option: str, value: str, service_cfg) -> str:
    """`container#N` shares that container's namespace (`--net=container:<its name>`), else the value as is."""
    if value.startswith("container#"):
        return f"{option}=container:{container_name(service_cfg.name, value, service_cfg.raw.get(value, {}))}"
    return f"{option}={value}"


def probe(service_cfg, rid: str) -> tuple[str, str | None]:
    """(state, why) of an ignored resource section: up/down when om can observe it, else undef and why not."""
    section = service_cfg.raw.get(rid, {})
    family = rid.partition("#")[0]
    if family == "container":
        return _probe_container(service_cfg.name, rid, section)
    if family == "fs":
        mnt = section.get("mnt", "").strip()
        if not mnt:
            return "undef", f"om cannot observe {rid}: it has no mnt keyword"
        return ("up", None) if os.path.ismount(mnt) else ("down", f"{mnt} is not mounted")
    return "undef", f"om cannot observe {rid}: {family} resources are not managed by om"


def _probe_container(service: str, rid: str, section: dict[str, str]) -> tuple[str, str | None]:
    kind = _section_kind(section)
    cli = cli_for(kind)
    if cli is None:
        return "undef", f"om cannot observe {rid}: {kind} CLI not found on PATH"
    name = container_name(service, rid, section)
    try:
        proc = subprocess.run([cli, "inspect", "--format", "{{.State.Status}}", name], capture_output=True,
                              text=True, timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "undef", f"om cannot observe {rid}: {os.path.basename(cli)} inspect {name}: {exc}"
    status = proc.stdout.strip()
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or [""])[-1]
        if "no such" in err.lower():
            return "down", f"container {name} does not exist"
        return "undef", f"om cannot observe {rid}: {os.path.basename(cli)} inspect {name}: {err or proc.returncode}"
    return ("up", None) if status == "running" else ("down", f"container {name} is {status or 'unknown'}")


def prefetch(service_cfg, tasks) -> None:
    """Probe the ignored resources the requirements of `tasks` name, before any transaction opens."""
    for task in tasks:
        for req in task.run_requires:
            if req.target in service_cfg.ignored:
                _cache[(service_cfg.name, req.target)] = (time.monotonic(), *probe(service_cfg, req.target))


def observed(service_cfg, rid: str) -> tuple[str, str | None]:
    """The prefetched state of `rid`, probing now when nothing recent was prefetched."""
    hit = _cache.get((service_cfg.name, rid))
    if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1], hit[2]
    state, why = probe(service_cfg, rid)
    _cache[(service_cfg.name, rid)] = (time.monotonic(), state, why)
    return state, why
