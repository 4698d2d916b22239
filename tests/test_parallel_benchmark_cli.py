"""benchmarks/parallel_benchmark.py times real CLI commands: the commands it builds are the ones
a user types, and the CLI parses them (nothing is run here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from vla_sim.cli.main import build_parser
from vla_sim.config import config_from_args, flag_values
from vla_sim.data.collect import CollectConfig

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "parallel_benchmark.py"
_spec = importlib.util.spec_from_file_location("parallel_benchmark", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

PY = "/venv/bin/python"


def _parsed(cmd: list[str]):
    assert cmd[:3] == [PY, "-m", "vla_sim.cli.main"]
    return build_parser().parse_args(cmd[3:])


@pytest.mark.parametrize("backend", ["process", "ray"])
def test_collect_command(backend):
    cmd = bench.collect_command(PY, out="/tmp/x", episodes=7, workers=2, backend=backend,
                                image_size=32, ray_address="127.0.0.1:6390")
    assert cmd[3:] == ["collect", "--env", "PickPlace", "--episodes", "7", "--workers", "2",
                       "--backend", backend,
                       *(["--ray-address", "127.0.0.1:6390"] if backend == "ray" else []),
                       "--image-size", "32", "--no-progress", "--out", "/tmp/x"]
    args = _parsed(cmd)
    assert args.command == "collect"
    cfg = config_from_args(CollectConfig, args)
    assert (cfg.env, cfg.episodes, cfg.workers, cfg.backend, cfg.image_size, cfg.progress,
            cfg.out) == ("PickPlace", 7, 2, backend, 32, False, "/tmp/x")
    assert cfg.ray_address == ("127.0.0.1:6390" if backend == "ray" else "")


@pytest.mark.parametrize("backend", ["process", "ray"])
def test_eval_command(backend):
    cmd = bench.eval_command(PY, policy="/ckpt", out="/tmp/e", episodes=5, workers=1,
                             backend=backend, ray_address="127.0.0.1:6390")
    assert ("--ray-address" in cmd) == (backend == "ray")
    assert "--image-size" not in cmd and "--cameras" not in cmd  # the checkpoint's own
    args = _parsed(cmd)
    assert (args.command, args.policy, args.out) == ("eval", "/ckpt", "/tmp/e")
    flags = flag_values(args)
    assert flags == {"env_ids": ["PickPlace"], "splits": ["train"], "episodes": 5,
                     "randomization": ["low"], "workers": 1, "backend": backend, "record": "none",
                     **({"ray_address": "127.0.0.1:6390"} if backend == "ray" else {})}


def test_without_an_address_a_ray_command_starts_its_own_ray():
    cmd = bench.collect_command(PY, out="o", episodes=1, workers=1, backend="ray",
                                image_size=64)
    assert "--ray-address" not in cmd


def test_ray_head_command_never_stops_other_rays():
    cmd = bench.ray_head_command("/venv/bin/ray", port=6390, cpus=2, temp_dir="/tmp/r",
                                 client_port=6391, agent_port=6392)
    assert cmd[:4] == ["/venv/bin/ray", "start", "--head", "--block"]
    joined = " ".join(cmd)
    for flag in ("--port 6390", "--num-cpus 2", "--include-dashboard=false",
                 "--disable-usage-stats", "--temp-dir /tmp/r", "--ray-client-server-port 6391",
                 "--dashboard-agent-listen-port 6392"):
        assert flag in joined
    assert "stop" not in cmd


def test_commands_are_shown_as_typed():
    assert bench._shown(["python", "-m", "x", "a b"], {"RAY_AUTH_MODE": "token"}) == \
        "RAY_AUTH_MODE=token python -m x 'a b'"
    assert bench.needs_token("RPC error: InvalidAuthToken: Authentication token is missing")
    assert not bench.needs_token("ConnectionError: Failed to connect")
