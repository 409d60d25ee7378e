"""Who a service's process runs as: ``user`` and ``group`` looked up, and whether this process
may switch to them (only root may).

Light on purpose (the standard library only): ``heartwatch check`` asks the same question
(``config.config_warnings``) as the daemon does before each spawn (``daemon/processes.py``).
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass


class IdentityError(Exception):
    """The user or group cannot be had; the message says why, plainly."""


@dataclass(frozen=True)
class RunAs:
    """Who a service's process runs as (``user``, ``group``), looked up at each spawn."""

    uid: int | None  # None: the daemon's own user, with another group
    gid: int
    groups: tuple[int, ...]  # supplementary: the user's own groups (none for group alone)
    environment: Mapping[str, str]  # HOME, USER, LOGNAME of the user, as ``su -`` sets them


def resolve_run_as(user: str | int | None, group: str | int | None) -> RunAs | None:
    """Who ``user`` and ``group`` name, or ``None`` to run as this process does; raise
    ``IdentityError`` when that cannot be (a user that is gone, a process that is not root)."""
    if user is None and group is None:
        return None
    try:
        entry = (
            pwd.getpwnam(user)
            if isinstance(user, str)
            else pwd.getpwuid(os.geteuid() if user is None else user)
        )
    except (KeyError, OverflowError):
        raise IdentityError(f"no user {user!r} on this machine") from None
    try:
        gid = entry.pw_gid if group is None else _group_id(group)
    except (KeyError, OverflowError):
        raise IdentityError(f"no group {group!r} on this machine") from None
    if os.geteuid() != 0:
        if entry.pw_uid == os.geteuid() and gid == os.getegid():
            return None  # already that user and group: nothing to change
        wanted = f"user {entry.pw_name!r}" if user is not None else f"group {group!r}"
        raise IdentityError(
            f"cannot run as {wanted} without root (running as {_user_name(os.geteuid())!r}; "
            "only root may switch to another user or group)"
        )
    if user is None:
        return RunAs(uid=None, gid=gid, groups=(), environment={})
    home = {"HOME": entry.pw_dir, "USER": entry.pw_name, "LOGNAME": entry.pw_name}
    groups = tuple(os.getgrouplist(entry.pw_name, gid))
    return RunAs(uid=entry.pw_uid, gid=gid, groups=groups, environment=home)


def _group_id(group: str | int) -> int:
    return grp.getgrnam(group).gr_gid if isinstance(group, str) else grp.getgrgid(group).gr_gid


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
