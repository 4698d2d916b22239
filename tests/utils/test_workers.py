"""Worker pools: started once, the initializer runs once per worker, results in order, the
initializer's and jobs' own errors reach the caller, threads fill the cores without
oversubscribing, bad backend settings are refused by name; the same on a two-node Ray cluster."""

from __future__ import annotations

import sys

import pool_jobs
import pytest

from vla_sim.utils.workers import (
    WorkerPool,
    check_backend,
    cpus_per_worker,
    import_ray,
    ship_folder,
    threads_per_worker,
)


def test_workers_times_threads_is_the_core_count():
    assert [threads_per_worker(w, cores=2) for w in (1, 2, 3)] == [2, 1, 1]
    assert threads_per_worker(4, cores=16) == 4


def test_ray_cpu_shares_fit_on_the_nodes():
    assert cpus_per_worker([1, 1], 2) == 1.0  # one worker per node
    assert cpus_per_worker([1, 1], 1) == 1.0  # never more than a node holds
    assert cpus_per_worker([4, 2], 3) == 2.0  # 2 + 1 slots of 2 CPUs
    assert cpus_per_worker([2], 4) == 0.5  # more workers than CPUs: fractions
    assert cpus_per_worker([1, 1], 3) == 0.5
    assert cpus_per_worker([0], 2) == 0.0


def test_bad_backend_settings_are_refused_by_name():
    from vla_sim.agents.training.configs import DAggerConfig, PPOConfig, ReinforceConfig
    from vla_sim.data.collect import CollectConfig
    from vla_sim.evaluation.evaluator import EvalConfig

    with pytest.raises(ValueError,
                       match=r"backend must be one of \('process', 'ray'\), got 'dask'"):
        check_backend("dask")
    for cls in (CollectConfig, EvalConfig, DAggerConfig, PPOConfig):
        with pytest.raises(ValueError, match="backend must be one of"):
            cls(backend="dask")
        with pytest.raises(ValueError, match="ray_address .* only used with backend 'ray'"):
            cls(ray_address="10.0.0.1:6379")
        assert cls(backend="ray", ray_address="10.0.0.1:6379").backend == "ray"
    with pytest.raises(ValueError, match="backend ray is for PPO"):
        ReinforceConfig(backend="ray")


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'vla-sim\[ray\]'"):
        import_ray()
    with pytest.raises(ImportError, match=r"vla-sim\[ray\]"):
        WorkerPool(2, backend="ray")


class _FakeRay:
    """Just enough of ``ray`` for connect_ray: the first init is refused for lacking a token."""

    def __init__(self, refusal: str):
        self.refusal, self.inits, self.modes = refusal, 0, []
        self.initialized = False

    def is_initialized(self):
        return self.initialized

    def init(self, **kwargs):
        import os

        self.inits += 1
        self.modes.append(os.environ.get("RAY_AUTH_MODE"))
        if self.inits == 1 and self.refusal:
            raise ConnectionError(self.refusal)
        self.initialized = True

    def shutdown(self):
        self.initialized = False


def test_a_cluster_that_wants_its_auth_token_is_joined_in_token_mode(monkeypatch):
    from vla_sim.utils.workers import connect_ray

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    fake = _FakeRay("InvalidAuthToken: Authentication token is missing or invalid")
    monkeypatch.setitem(sys.modules, "ray", fake)
    assert connect_ray("10.0.0.1:6379") is fake
    assert fake.modes == [None, "token"] and fake.initialized
    other = _FakeRay("connection refused")  # any other error is the caller's to see
    monkeypatch.setitem(sys.modules, "ray", other)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with pytest.raises(ConnectionError, match="connection refused"):
        connect_ray("10.0.0.1:6379")
    assert other.inits == 1


def _check_pool(pool: WorkerPool, threads: int) -> list[dict]:
    got = list(pool.map(pool_jobs.job, range(6)))
    assert [r["i"] for r in got] == list(range(6))  # in item order
    assert {r["tag"] for r in got} == {"hi"}
    assert all(r["inits"] == 1 for r in got)  # the initializer ran once per worker
    assert {r["omp"] for r in got} == {str(threads)}
    with pytest.raises(KeyError, match="job 3 failed"):
        pool.submit(pool_jobs.failing_job, 3).result()
    return got


def test_process_pool_starts_once_and_fills_the_cores():
    with WorkerPool(2, pool_jobs.init, ("hi",)) as pool:
        assert pool.threads == threads_per_worker(2)
        got = _check_pool(pool, pool.threads)
        again = pool.submit(pool_jobs.job, 9).result()  # the same workers serve later jobs
        assert again["pid"] in {r["pid"] for r in got} and again["inits"] == 1
    with WorkerPool(2, pool_jobs.broken_init) as pool, \
            pytest.raises(ValueError, match="the initializer broke"):
        pool.submit(pool_jobs.job, 0).result()


def test_started_process_pool_runs_every_initializer_before_any_job(tmp_path):
    import time

    with WorkerPool(2, pool_jobs.marking_init, (str(tmp_path),)).start() as pool:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(list(tmp_path.iterdir())) == 2  # both workers up, no job submitted yet
        got = [pool.submit(pool_jobs.job, i).result() for i in range(4)]
        assert {str(r["pid"]) for r in got} <= {p.name for p in tmp_path.iterdir()}
        assert all(r["inits"] == 1 for r in got)


def test_shutdown_lets_a_running_job_finish_and_leaves_no_worker(tmp_path):
    import os
    import time

    pool = WorkerPool(2)
    pids = {pool.submit(pool_jobs.job, i).result()["pid"] for i in range(4)}
    running = pool.submit(pool_jobs.slow_write, str(tmp_path / "out.txt"), 1.0)
    while not (tmp_path / "out.txt.started").exists():  # queued jobs are cancelled; wait
        time.sleep(0.01)
    pool.shutdown()  # a job still running: the workers exit gracefully, after it
    assert running.result() and (tmp_path / "out.txt").read_text() == "done"
    idle = WorkerPool(2)
    pids = {idle.submit(pool_jobs.job, i).result()["pid"] for i in range(4)}
    idle.shutdown()  # every job returned: the workers are ended at once
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_ray_pool_uses_both_nodes_and_hands_back_errors(ray_cluster, tmp_path):
    with WorkerPool(2, pool_jobs.init, ("hi",), backend="ray",
                    ray_address=ray_cluster.address) as pool:
        assert pool.threads == 1  # one CPU per node
        got = _check_pool(pool, 1)
        assert len({r["node"] for r in got}) == 2  # a worker on each node
        # a folder reaches the workers through the object store, as a local copy
        (tmp_path / "model.safetensors").write_bytes(b"weights")
        (tmp_path / "config.json").write_text("{}")
        shipped = ship_folder(tmp_path, "ray")
        seen = pool.submit(pool_jobs.read_folder, shipped).result()
        assert seen["files"] == {"model.safetensors": b"weights", "config.json": b"{}"}
        assert seen["path"] != str(tmp_path)
    with WorkerPool(2, pool_jobs.broken_init, backend="ray") as pool, \
            pytest.raises(ValueError, match="the initializer broke"):
        pool.submit(pool_jobs.job, 0).result()
