"""Folders and files only this user controls: raykube's state, tokens and checkpoints.

A checkpoint folder, a state folder or a token file that another user of the machine can write
(or that they made first, in a shared place such as ``/tmp``) lets them put what your next run,
replica or command reads. raykube creates its own folders 0700 and files 0600, and refuses to
use a folder that another user owns or may write, or that lies below a folder someone else
could swap (group- or world-writable without the sticky bit, owned by neither you nor root).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def raykube_home() -> Path:
    """``$RAYKUBE_HOME``, default ``~/.raykube``: raykube's own folder for this user."""
    return Path(os.environ.get("RAYKUBE_HOME") or Path.home() / ".raykube")


def make_private_dir(folder: Path) -> Path:
    """``folder`` created (with its parents) 0700, for this user only."""
    folder.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(folder, PRIVATE_DIR)
    return folder


def write_private(path: Path, text: str) -> None:
    """Write ``path`` atomically, readable by this user only (0600 from creation on)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, PRIVATE_FILE)
    tmp.replace(path)


def why_not_private(folder: Path) -> str | None:
    """Why another user could change what is in ``folder`` (an existing folder), or None.

    The folder itself must be this user's and writable by no one else; each folder above it
    must be this user's or root's, and writable by others only with the sticky bit (``/tmp``).
    """
    me = os.getuid()
    info = folder.stat()
    if info.st_uid != me:
        return f"{folder} belongs to user id {info.st_uid}, not to you ({me})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{folder} can be written by other users (mode {stat.S_IMODE(info.st_mode):o})"
    for parent in folder.resolve().parents:
        above = parent.stat()
        if above.st_uid not in (me, 0):
            return f"{parent}, above {folder}, belongs to user id {above.st_uid}"
        if above.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not above.st_mode & stat.S_ISVTX:
            return (f"{parent}, above {folder}, can be written by other users without the "
                    f"sticky bit, so {folder} could be swapped")
    return None
