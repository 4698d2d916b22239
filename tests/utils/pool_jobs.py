"""Job functions for the worker-pool tests (importable by name in spawned processes and, through
the Ray fixture's PYTHONPATH, in Ray workers)."""

from __future__ import annotations

import os

STATE: dict = {"inits": 0}


def init(tag: str) -> None:
    STATE["inits"] += 1
    STATE["tag"] = tag


def marking_init(folder: str) -> None:
    """Leave a file named after this worker's pid: proof that its initializer ran."""
    from pathlib import Path

    (Path(folder) / str(os.getpid())).touch()
    init("marked")


def slow_write(path: str, seconds: float) -> str:
    import time
    from pathlib import Path

    Path(path + ".started").touch()
    time.sleep(seconds)
    Path(path).write_text("done")
    return path


def broken_init() -> None:
    raise ValueError("the initializer broke")


def job(i: int) -> dict:
    node = None
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return {"i": i, "pid": os.getpid(), "node": node, "inits": STATE["inits"],
            "tag": STATE.get("tag"), "omp": os.environ.get("OMP_NUM_THREADS")}


def failing_job(i: int) -> None:
    raise KeyError(f"job {i} failed")


def read_folder(folder) -> dict:
    from pathlib import Path

    path = Path(folder.path())
    return {"path": str(path), "files": {p.name: p.read_bytes() for p in path.iterdir()}}
