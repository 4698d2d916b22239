"""Fixtures shared across the test folders: a local two-node Ray cluster for the Ray backend."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Modules Ray workers must import by name (job functions of tests/utils/test_workers.py).
RAY_TEST_PATHS = [str(Path(__file__).resolve().parent / "utils")]


@pytest.fixture(scope="session")
def ray_cluster():
    """A Ray cluster on this machine, started and stopped by the test session: a head node and a
    second node process, one CPU each, so two workers land on two nodes. The session's driver
    is connected to it (the code under test reuses the connection). Skipped without Ray."""
    ray = pytest.importorskip("ray", reason="the Ray backend needs pip install 'vla-sim[ray]'")
    from ray.cluster_utils import Cluster

    small = {"num_cpus": 1, "object_store_memory": 100 * 1024 ** 2}
    cluster = Cluster(initialize_head=True, head_node_args={**small, "include_dashboard": False})
    try:
        cluster.add_node(**small)
        cluster.wait_for_nodes()
        path = os.pathsep.join(RAY_TEST_PATHS + [p for p in [os.environ.get("PYTHONPATH")] if p])
        ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": path}},
                 log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
