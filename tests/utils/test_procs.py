"""Pool workers die with the command that started them, even when it is killed with SIGKILL."""

import os
import signal
import subprocess
import sys
import time

import pytest

CHILD = """
import multiprocessing as mp, sys, time
from vla_sim.utils.procs import die_with_parent

def worker():
    die_with_parent()
    time.sleep(60)

if __name__ == "__main__":
    p = mp.get_context("spawn").Process(target=worker)
    p.start()
    print(p.pid, flush=True)
    time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux-only")
def test_a_worker_dies_when_its_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(CHILD)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker_pid = int(parent.stdout.readline())
    time.sleep(1.0)  # the worker has called die_with_parent
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(50):
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            return
        # a zombie until reaped by init: check its state
        try:
            with open(f"/proc/{worker_pid}/stat") as f:
                if f.read().split()[2] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.1)
    os.kill(worker_pid, signal.SIGKILL)
    raise AssertionError("the worker outlived its killed parent")
