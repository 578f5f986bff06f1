"""One run of a profile at a time: a lock file in the profile's work folder.

``<work_dir>/run.lock`` holds ``{pid, host, started, command}`` of the pipeline process running the profile, and
that process holds an exclusive ``flock`` on it while it runs. The operating system drops the ``flock`` when the
process ends, however it ends, so a lock file whose ``flock`` can be taken was left by a process that is gone
(killed, crashed, machine rebooted): it is taken over with one line saying so.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .schema import ProfileError

LOCK_NAME = "run.lock"


class ProfileBusy(ProfileError):
    """Another live process is running the same profile (same work folder)."""


def _describe(info: dict) -> str:
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}: "
            f"{info.get('command', '?')}")


def _command() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("pipeline", "__main__.py")):
        argv[0] = "python -m reidlib.pipeline"
    return " ".join(argv)


def _read(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 1 << 16).decode(errors="replace").strip()
    try:
        info = json.loads(text) if text else {}
    except json.JSONDecodeError:
        info = {"command": text[:200]}
    return info if isinstance(info, dict) else {}


@contextmanager
def profile_lock(work_dir: str | Path, name: str, say=print) -> Iterator[Path]:
    """Hold the lock of the profile whose work folder is ``work_dir`` for the duration of the block.

    ``say`` prints the one line about a stale lock taken over.

    Raises:
        ProfileBusy: another live process holds the lock; the message names it (pid, host, start, command).
    """
    path = Path(work_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _read(fd)
            os.close(fd)
            raise ProfileBusy(f"profile {name} is already running ({_describe(info)}); wait for it to finish or "
                              f"stop that process (its lock: {path})") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file between our open and flock: lock the new one
    try:
        old = _read(fd)
        if old:
            say(f"note: taking over the lock of profile {name} left by a process that is gone ({_describe(old)})")
        mine = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": _command()}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(mine) + "\n").encode())
        yield path
    finally:
        try:
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
