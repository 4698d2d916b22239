"""Collection and evaluation with 1 and 2 workers, for the process pool and for Ray.

    python benchmarks/parallel_benchmark.py [--episodes 100] [--eval-episodes 100]
        [--policy CHECKPOINT_DIR] [--backends process,ray] [--workers 1,2] [--ray-address ADDR]
        [--repeats 1]

Collection: the scripted expert until ``--episodes`` successful PickPlace episodes are stored
(the same attempts whatever the backend or worker count). Evaluation: ``--eval-episodes``
PickPlace episodes of ``--policy`` (a checkpoint folder); without one, of a random-init
VLAPolicy of the default architecture and text encoder (saved here, nothing is trained): the
same per-step cost as a trained checkpoint, but every episode runs to the time limit.

Every figure is the wall time of one CLI command run as a subprocess exactly as a user types it
(``python -m vla_sim.cli.main collect ...`` / ``... eval ...``, printed under each row), so each
row pays the same costs: interpreter start, imports, worker start-up, env builds, policy and
text-encoder loading. Nothing runs in this process, so no row carries or escapes one-time
imports and the order of rows is neutral. With ``--repeats K`` a row is the median of K runs.

Ray: with ``--ray-address`` the commands join that cluster; without it a local head is started
once, as one would start a cluster (``ray start --head --block`` on a free port, this machine's
cores, no dashboard, its own temp dir), every ray command joins it with ``--ray-address``, and
it is stopped at the end (SIGTERM to the head, which stops its processes; ``ray stop`` is never
run, it would stop every Ray on the machine). Its start-up is printed apart, not in the figures.
When the head turns on token authentication (``ray start`` does when a token is at hand, e.g.
``~/.ray/auth_token``), the ray commands run with ``RAY_AUTH_MODE=token``, as a user's must: a
driver given an explicit address does not use the token otherwise.
Figures depend on the machine and its load: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.7  # 2 workers must be at least this many times faster than 1
CLI = ["-m", "vla_sim.cli.main"]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
RAY_READY_TIMEOUT_S = 120.0
RAY_PROBE = ("import sys, ray; ray.init(address=sys.argv[1], log_to_driver=False); "
             "cpus = ray.cluster_resources().get('CPU', 0); ray.shutdown(); "
             "sys.exit(0 if cpus > 0 else 3)")


# --- the commands (pure: tests check them without running anything) -----------------------------

def _backend_flags(workers: int, backend: str, ray_address: str) -> list[str]:
    flags = ["--workers", str(workers), "--backend", backend]
    if backend == "ray" and ray_address:
        flags += ["--ray-address", ray_address]
    return flags


def collect_command(python: str, *, out: str, episodes: int, workers: int, backend: str,
                    image_size: int, ray_address: str = "") -> list[str]:
    """``vla-sim collect`` of ``episodes`` successful PickPlace episodes into ``out``."""
    return [python, *CLI, "collect", "--env", "PickPlace", "--episodes", str(episodes),
            *_backend_flags(workers, backend, ray_address), "--image-size", str(image_size),
            "--no-progress", "--out", str(out)]


def eval_command(python: str, *, policy: str, out: str, episodes: int, workers: int,
                 backend: str, ray_address: str = "") -> list[str]:
    """``vla-sim eval`` of ``policy`` on ``episodes`` PickPlace episodes (train instructions, low
    randomization, no videos); cameras and image size come from the checkpoint."""
    return [python, *CLI, "eval", "--policy", str(policy), "--env", "PickPlace",
            "--episodes", str(episodes), "--split", "train", "--randomization", "low",
            *_backend_flags(workers, backend, ray_address), "--record", "none",
            "--out", str(out)]


def ray_head_command(ray: str, *, port: int, cpus: int, temp_dir: str, client_port: int,
                     agent_port: int) -> list[str]:
    """``ray start --head --block`` on 127.0.0.1:``port``. The two ports Ray would otherwise take
    at fixed defaults (client server 10001, dashboard agent 52365) are chosen free too, so a
    head that is already running on this machine does not clash with this one."""
    return [ray, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
            "--port", str(port), "--num-cpus", str(cpus), "--include-dashboard=false",
            "--disable-usage-stats", "--temp-dir", str(temp_dir),
            "--ray-client-server-port", str(client_port),
            "--dashboard-agent-listen-port", str(agent_port)]


# --- running them --------------------------------------------------------------------------------

def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **OFFLINE, **(extra or {})}


def _shown(cmd: list[str], extra: dict[str, str] | None = None) -> str:
    """``cmd`` as one would type it in a shell, with ``extra`` environment variables in front."""
    return shlex.join([f"{k}={v}" for k, v in (extra or {}).items()] + cmd)


def _fail(what: str, cmd: list[str], out: str, err: str,
          extra: dict[str, str] | None = None) -> None:
    tail = "\n".join((err or out or "").strip().splitlines()[-40:])
    print(f"\n{what} failed:\n  $ {_shown(cmd, extra)}\n--- output (tail) ---\n{tail}",
          file=sys.stderr, flush=True)
    sys.exit(1)


def _timed(cmd: list[str], extra: dict[str, str]) -> tuple[float, str]:
    """Wall time of ``cmd`` (``extra`` added to its environment) and its stdout; exits on a
    non-zero status."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(extra), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        _fail(f"command (exit status {proc.returncode})", cmd, proc.stdout, proc.stderr, extra)
    return seconds, proc.stdout


def _attempts(stdout: str, cmd: list[str]) -> int:
    m = re.search(r"after (\d+) attempts", stdout)
    if m is None:
        _fail("reading the attempt count", cmd, stdout, "")
    return int(m.group(1))


def _episodes(stdout: str, cmd: list[str]) -> int:
    m = re.search(r"^(\d+) episodes.* in [\d.]+ s", stdout, re.MULTILINE)
    if m is None:
        _fail("reading the episode count", cmd, stdout, "")
    return int(m.group(1))


def _run_row(make, count, repeats: int, label: str, noun: str) -> tuple[float, int]:
    """Median seconds of ``repeats`` runs of ``make(k)`` -> (command, its fresh output folder,
    extra environment) and the count ``count(stdout, cmd)`` reads from the last run's output."""
    times, n, first = [], 0, ""
    for k in range(repeats):
        cmd, out, extra = make(k)
        first = first or _shown(cmd, extra)
        s, stdout = _timed(cmd, extra)
        shutil.rmtree(out, ignore_errors=True)
        times.append(s)
        n = count(stdout, cmd)
    s = statistics.median(times)
    runs = "" if repeats == 1 else f" (median of {', '.join(f'{t:.1f}' for t in times)} s)"
    print(f"  {label}: {n} {noun} in {s:.1f} s{runs}\n    $ {first}", flush=True)
    return s, n


def needs_token(output: str) -> bool:
    """Whether a Ray driver's ``output`` says the cluster wants an auth token it did not send."""
    return "InvalidAuthToken" in output or "Authentication token is missing" in output


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead:
    """A local Ray head started with ``ray start --head --block`` and stopped with SIGTERM (then
    SIGKILL of its process group and of anything left that names its temp dir or address)."""

    def __init__(self, cpus: int):
        ray = Path(sys.executable).parent / "ray"
        if not ray.exists():
            found = shutil.which("ray")
            if not found:
                sys.exit("the ray backend needs the ray command: pip install 'vla-sim[ray]'")
            ray = Path(found)
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.ray = str(ray)
        # short: Ray's socket paths under it must stay below the 107-character limit
        self.temp_dir = tempfile.mkdtemp(prefix="vsb_ray_")
        self.log_path = Path(self.temp_dir) / "head.log"
        self.cmd = ray_head_command(self.ray, port=self.port, cpus=cpus, temp_dir=self.temp_dir,
                                    client_port=_free_port(), agent_port=_free_port())
        self.proc: subprocess.Popen | None = None
        self.driver_env: dict[str, str] = {}  # what a driver needs to join it

    def start(self) -> float:
        """Start the head and wait until it reports its CPUs; returns the seconds it took."""
        t0 = time.perf_counter()
        with open(self.log_path, "w") as log:
            # its own session: Ctrl-C here reaches the benchmark, which stops the head in order
            self.proc = subprocess.Popen(self.cmd, env=_env(), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        # ready once a driver can join it, as the commands will, and sees its CPUs (``ray
        # status`` is no test: it does not pick up the token a head may require, the drivers do)
        probe, last = [sys.executable, "-c", RAY_PROBE, self.address], ""
        while True:
            if self.proc.poll() is not None:
                _fail(f"the Ray head (exit status {self.proc.returncode})", self.cmd,
                      self.log_path.read_text(errors="replace"), "")
            if time.perf_counter() - t0 > RAY_READY_TIMEOUT_S:
                _fail(f"the Ray head (not ready after {RAY_READY_TIMEOUT_S:.0f} s)", self.cmd,
                      self.log_path.read_text(errors="replace") + "\n--- joining it ---\n"
                      + last, "")
            try:
                st = subprocess.run(probe, env=_env(self.driver_env), capture_output=True,
                                    text=True, timeout=60, check=False)
                if st.returncode == 0:
                    return time.perf_counter() - t0
                last = st.stderr or st.stdout
                if (needs_token(last) and not self.driver_env
                        and "RAY_AUTH_MODE" not in os.environ):
                    # `ray start` enables token auth when a token is at hand (~/.ray/auth_token),
                    # but a driver given an explicit address only uses it in token mode
                    self.driver_env = {"RAY_AUTH_MODE": "token"}
                    continue
            except subprocess.TimeoutExpired:
                last = "timed out"
            time.sleep(0.5)

    def _leftovers(self) -> list[int]:
        """Processes (other than this one) whose command line names this head's temp dir or
        address: its raylet, GCS, agents and workers."""
        marks = (self.temp_dir, self.address)
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(m in cmd for m in marks):
                pids.append(int(entry.name))
        return pids

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)  # the head stops its processes itself
                try:
                    self.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    print("the Ray head did not stop within 60 s of SIGTERM: killed", flush=True)
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
            deadline = time.monotonic() + 15  # its processes may take a moment to exit
            while (self._group_alive() or self._leftovers()) and time.monotonic() < deadline:
                time.sleep(0.5)
            left = [f"process group {self.proc.pid}"] if self._group_alive() else []
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            for pid in self._leftovers():
                left.append(f"pid {pid}")
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if left:
                print(f"killed what the Ray head left running: {', '.join(left)}", flush=True)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _policy(args, tmp: Path) -> tuple[str, str]:
    """(checkpoint folder, description) of the policy to evaluate."""
    if args.policy:
        target = str(Path(args.policy).resolve())
        return target, f"checkpoint {target}"
    os.environ.update(OFFLINE)
    import torch

    from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, save_policy

    torch.manual_seed(0)
    config = VLAPolicyConfig()
    path = save_policy(VLAPolicy(config), tmp / "random_init_policy")
    return (str(path),
            (f"a random-init VLAPolicy (default config, text encoder {config.text_encoder!r}; "
             "no --policy given, nothing trained): every episode runs to the time limit"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=100, help="PickPlace episodes to collect")
    p.add_argument("--eval-episodes", type=int, default=100, help="PickPlace episodes to evaluate")
    p.add_argument("--policy", default="", help="checkpoint folder to evaluate")
    p.add_argument("--backends", default="process,ray")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--ray-address", default="", help="Ray cluster (default: a local Ray head "
                                                     "started here once)")
    p.add_argument("--image-size", type=int, default=64, help="collection image size")
    p.add_argument("--skip", default="", help="'collect' or 'eval' to run only the other")
    p.add_argument("--repeats", type=int, default=1, help="runs per row; a row is their median")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    backends = [b for b in args.backends.split(",") if b]
    counts = [int(w) for w in args.workers.split(",") if w]
    from vla_sim.utils.workers import available_cores

    cores = available_cores()
    load = os.getloadavg()
    print(f"{cores} cores; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          "(an idle machine's figures are the ones to quote)")

    python = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="vla_sim_parallel_bench_"))
    head: RayHead | None = None
    rows: list[tuple[str, str, int, float, int]] = []  # (what, backend, workers, s, episodes)
    try:
        address, ray_env = args.ray_address, {}
        if "ray" in backends:
            if address:
                print(f"Ray: the commands join {address}")
            else:
                head = RayHead(cores)
                s = head.start()
                address, ray_env = head.address, head.driver_env
                print(f"Ray head started at {address} in {s:.1f} s (once; not in the figures "
                      f"below)\n    $ {shlex.join(head.cmd)}", flush=True)
                if ray_env:
                    print(f"  it requires token authentication (Ray enables it when a token is "
                          f"at hand): the ray commands run with {_shown([], ray_env)}")
        if args.skip != "collect":
            print(f"collect: {args.episodes} successful PickPlace episodes, scripted expert, "
                  f"{args.image_size} px")
            for backend in backends:
                for w in counts:
                    def make(k, backend=backend, w=w):
                        out = tmp / f"collect_{backend}_{w}_{k}"
                        return collect_command(python, out=str(out), episodes=args.episodes,
                                               workers=w, backend=backend,
                                               image_size=args.image_size,
                                               ray_address=address), out, \
                            (ray_env if backend == "ray" else {})

                    s, n = _run_row(make, _attempts, args.repeats,
                                    f"{backend:7s} workers={w}", "attempts")
                    rows.append(("collect", backend, w, s, n))
        if args.skip != "eval":
            policy, what = _policy(args, tmp)
            print(f"eval: {args.eval_episodes} PickPlace episodes of {what}")
            for backend in backends:
                for w in counts:
                    def make(k, backend=backend, w=w):
                        out = tmp / f"eval_{backend}_{w}_{k}"
                        return eval_command(python, policy=policy, out=str(out),
                                            episodes=args.eval_episodes, workers=w,
                                            backend=backend, ray_address=address), out, \
                            (ray_env if backend == "ray" else {})

                    s, n = _run_row(make, _episodes, args.repeats,
                                    f"{backend:7s} workers={w}", "episodes")
                    rows.append(("eval", backend, w, s, n))
    finally:
        if head is not None:
            head.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"| {'what':7s} | {'backend':7s} | workers | seconds | episodes/s | speed-up vs 1 |")
    print("|---------|---------|--------:|--------:|-----------:|--------------:|")
    ok = True
    for what, backend, w, s, n in rows:
        one = next((r[3] for r in rows if r[:3] == (what, backend, 1)), None)
        speed = one / s if one else None
        if w == 2 and speed is not None:
            ok &= speed >= TARGET
        print(f"| {what:7s} | {backend:7s} | {w:7d} | {s:7.1f} | {n / s:10.2f} | "
              f"{'' if speed is None else f'{speed:.2f}x':>13s} |")
    if 1 in counts and 2 in counts:
        print(f"\n2 workers >= {TARGET}x one worker for every row: {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
