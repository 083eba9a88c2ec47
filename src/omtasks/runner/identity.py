"""Who a command runs as (SPEC 3.3 `user`/`group`, 5.3 impersonation).

The identity is resolved before anything is executed so that a refusal
(`impersonation refused`) is decided by the pipeline, not discovered as a
failed fork.  Supplementary groups always come from the target account's
group membership, never from the process running `om` (root's groups would
otherwise leak into every impersonated command).
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass


class ImpersonationError(Exception):
    """The command cannot run as the requested user or group; the message is the one SPEC 5.3 logs."""


@dataclass(frozen=True)
class Identity:
    """A resolved target account: what `setgid`/`setgroups`/`setuid` and the environment need."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    shell: str


def resolve(user: str | None, group: str | None) -> Identity:
    """Resolve `user` (name or uid; None: the effective user) and `group` (name or gid; None: the user's primary group).

    Raises ImpersonationError for an unknown user or group, and when `om` is
    not root and would have to change uid or gid.
    """
    pw = _current_user() if user is None else _user(str(user))
    gid = pw.pw_gid if group is None else _group(str(group))
    euid = os.geteuid()
    if euid != 0:
        if pw.pw_uid != euid:
            raise ImpersonationError(f"cannot run as user '{user}': impersonation needs root")
        if group is None:
            # Without root the gid cannot change: "primary group" means the one we run with.
            gid = os.getegid()
        elif gid != os.getegid():
            raise ImpersonationError(f"cannot run as group '{group}': impersonation needs root")
    return Identity(
        name=pw.pw_name,
        uid=pw.pw_uid,
        gid=gid,
        groups=tuple(os.getgrouplist(pw.pw_name, gid)),
        home=pw.pw_dir,
        shell=pw.pw_shell,
    )


def _current_user() -> pwd.struct_passwd:
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid)
    except KeyError as exc:
        raise ImpersonationError(f"user '{uid}' does not exist") from exc


def _user(text: str) -> pwd.struct_passwd:
    # A name wins over a number so that an all-digit login name still works.
    try:
        return pwd.getpwnam(text)
    except KeyError:
        pass
    if text.isdigit():
        try:
            return pwd.getpwuid(int(text))
        except KeyError:
            pass
    raise ImpersonationError(f"user '{text}' does not exist")


def _group(text: str) -> int:
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        pass
    if text.isdigit():
        try:
            return grp.getgrgid(int(text)).gr_gid
        except KeyError:
            pass
    raise ImpersonationError(f"group '{text}' does not exist")
