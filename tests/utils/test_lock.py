"""One writer per run folder: a live writer's lock refuses a second command, a dead one's is
taken over."""

import json
import os
import socket
import subprocess
import sys

import pytest

from vla_sim.cli.main import main
from vla_sim.utils.lock import FolderLock, FolderLockedError, lock_path


def _fake_owner(folder, pid):
    lock_path(folder).write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                             "since": 0.0}))


def test_a_folder_written_by_a_live_process_is_refused_naming_it(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _fake_owner(tmp_path / "run", other.pid)
        with pytest.raises(FolderLockedError, match=f"pid {other.pid}"):
            FolderLock(tmp_path / "run").acquire()
    finally:
        other.kill()
        other.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_released(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _fake_owner(tmp_path / "run", dead.pid)
    with caplog.at_level("WARNING", logger="vla_sim"), FolderLock(tmp_path / "run"):
        owner = json.loads(lock_path(tmp_path / "run").read_text())
        assert owner["pid"] == os.getpid()
    assert "stale lock" in caplog.text
    assert not lock_path(tmp_path / "run").exists()


def test_a_second_command_into_a_locked_folder_exits_with_one_line(tmp_path, capsys):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _fake_owner(tmp_path / "data", other.pid)
        rc = main(["collect", "--env", "Reach", "--episodes", "1", "--out",
                   str(tmp_path / "data"), "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and "being written by another command" in err
        assert not (tmp_path / "data").exists()  # nothing was written
    finally:
        other.kill()
        other.wait()
