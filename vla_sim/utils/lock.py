"""One writer per run folder: a lock file beside the folder, holding the writer's pid.

Two commands writing one dataset or run folder at once corrupt it (interleaved episodes,
metadata that disagrees with the data). The lock is a sibling file ``.NAME.lock`` (so it never
mixes with the folder's own files) created with O_EXCL; a lock left by a process that no longer
exists is taken over, and the takeover is logged.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

log = logging.getLogger(__name__)


class FolderLockedError(ValueError):
    """Another live process is writing the folder."""


def lock_path(folder: str | Path) -> Path:
    folder = Path(folder).absolute()
    return folder.parent / f".{folder.name}.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class FolderLock:
    """``with FolderLock(out): ...`` holds ``out`` for this process."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = lock_path(folder)
        self._held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and owner.get("host") == me["host"] and \
                        owner.get("pid") != me["pid"] and _alive(int(owner.get("pid", -1))):
                    raise FolderLockedError(
                        f"{self.folder} is being written by another command (pid "
                        f"{owner['pid']}, lock {self.path}); wait for it or choose another "
                        "output folder") from None
                if owner is not None and owner.get("pid") == me["pid"]:
                    self._held = True  # re-entrant within one process
                    return
                log.warning("taking over the stale lock %s (pid %s is gone)", self.path,
                            None if owner is None else owner.get("pid"))
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._held = True
            return
        raise FolderLockedError(f"could not lock {self.folder} ({self.path})")

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None  # half-written or unreadable: treated as stale

    def release(self) -> None:
        if self._held:
            owner = self._owner()
            if owner is not None and owner.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
