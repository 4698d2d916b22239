"""Collection and evaluation with 1 and 2 workers, for the process pool and for Ray.

    python benchmarks/parallel_benchmark.py [--episodes 100] [--eval-episodes 100]
        [--policy CHECKPOINT_DIR] [--backends process,ray] [--workers 1,2] [--ray-address ADDR]

Collection: the scripted expert until ``--episodes`` successful PickPlace episodes are stored
(the same attempts whatever the backend or worker count). Evaluation: ``--eval-episodes``
PickPlace episodes of ``--policy`` (a checkpoint folder); without one, of a random-init
VLAPolicy of the default architecture and text encoder (made here, nothing is trained): the
same per-step cost as a trained checkpoint, but every episode runs to the time limit.

Every figure is the wall time of the whole command as a user sees it (worker start-up, env
builds, policy and text-encoder loading included); only the local Ray instance is started once
beforehand (a cluster is started once, not per command) and its start-up is printed apart, and
this process's own one-time imports are paid by an untimed one-episode warm-up (1 worker runs
in this process, so without it the first row would carry them).
Figures depend on the machine and its load: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

TARGET = 1.7  # 2 workers must be at least this many times faster than 1


def _collect(args, out: Path, backend: str, workers: int) -> tuple[float, int]:
    from vla_sim.data.collect import CollectConfig, collect

    cfg = CollectConfig(out=str(out), env="PickPlace", episodes=args.episodes, workers=workers,
                        backend=backend, ray_address=args.ray_address if backend == "ray" else "",
                        image_size=args.image_size, progress=False)
    t0 = time.perf_counter()
    result = collect(cfg)
    return time.perf_counter() - t0, result.attempts


def _evaluate(args, spec, size: int, cameras: list[str], backend: str, workers: int
              ) -> tuple[float, int]:
    from vla_sim.evaluation.evaluator import EvalConfig, evaluate

    cfg = EvalConfig(env_ids=["vla_sim/PickPlace-v0"], episodes=args.eval_episodes,
                     splits=["train"], randomization=["low"], image_size=size, cameras=cameras,
                     workers=workers, backend=backend,
                     ray_address=args.ray_address if backend == "ray" else "", video_dir=None,
                     record="none")
    t0 = time.perf_counter()
    result = evaluate(spec, cfg)
    return time.perf_counter() - t0, len(result.episodes)


def _policy(args, tmp: Path):
    """(spec, image size, cameras, description) of the policy to evaluate."""
    from vla_sim.evaluation.policies import PolicySpec, checkpoint_observation_settings

    if args.policy:
        target = str(Path(args.policy).resolve())
        size, cams = checkpoint_observation_settings(target)
        return (PolicySpec("checkpoint", target), size or 64, cams or ["front"],
                f"checkpoint {target}")
    import torch

    from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, save_policy

    torch.manual_seed(0)
    config = VLAPolicyConfig()
    path = save_policy(VLAPolicy(config), tmp / "random_init_policy")
    return (PolicySpec("checkpoint", str(path)), config.image_size, list(config.cameras),
            (f"a random-init VLAPolicy (default config, text encoder {config.text_encoder!r}; "
            "no --policy given, nothing trained): every episode runs to the time limit"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=100, help="PickPlace episodes to collect")
    p.add_argument("--eval-episodes", type=int, default=100, help="PickPlace episodes to evaluate")
    p.add_argument("--policy", default="", help="checkpoint folder to evaluate")
    p.add_argument("--backends", default="process,ray")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--ray-address", default="", help="Ray cluster (default: a local Ray)")
    p.add_argument("--image-size", type=int, default=64, help="collection image size")
    p.add_argument("--skip", default="", help="'collect' or 'eval' to run only the other")
    args = p.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    counts = [int(w) for w in args.workers.split(",") if w]
    from vla_sim.utils.workers import available_cores

    load = os.getloadavg()
    print(f"{available_cores()} cores; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          "(an idle machine's figures are the ones to quote)")
    if "ray" in backends:
        from vla_sim.utils.workers import connect_ray

        t0 = time.perf_counter()
        connect_ray(args.ray_address)
        print(f"Ray {'joined' if args.ray_address else 'started'} in "
              f"{time.perf_counter() - t0:.1f} s (once; not in the figures below)")

    tmp = Path(tempfile.mkdtemp(prefix="vla_sim_parallel_bench_"))
    rows: list[tuple[str, str, int, float, int]] = []  # (what, backend, workers, s, episodes)
    try:
        # untimed: this process's one-time imports and caches, so that the first timed row
        # (1 worker runs in this process) does not carry them and the order of rows is neutral
        t0 = time.perf_counter()
        warm = argparse.Namespace(**{**vars(args), "episodes": 1, "eval_episodes": 1})
        if args.skip != "collect":
            _collect(warm, tmp / "warm_up", "process", 1)
        if args.skip != "eval":
            _evaluate(warm, *_policy(args, tmp)[:3], "process", 1)
        print(f"warm-up in this process: {time.perf_counter() - t0:.1f} s (not in the figures)")
        if args.skip != "collect":
            print(f"collect: {args.episodes} successful PickPlace episodes, scripted expert, "
                  f"{args.image_size} px")
            for backend in backends:
                for w in counts:
                    s, n = _collect(args, tmp / f"collect_{backend}_{w}", backend, w)
                    rows.append(("collect", backend, w, s, n))
                    print(f"  {backend:7s} workers={w}: {n} attempts in {s:.1f} s", flush=True)
        if args.skip != "eval":
            spec, size, cams, what = _policy(args, tmp)
            print(f"eval: {args.eval_episodes} PickPlace episodes of {what}")
            for backend in backends:
                for w in counts:
                    s, n = _evaluate(args, spec, size, cams, backend, w)
                    rows.append(("eval", backend, w, s, n))
                    print(f"  {backend:7s} workers={w}: {n} episodes in {s:.1f} s", flush=True)
    finally:
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
