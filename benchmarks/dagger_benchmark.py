"""DAgger benchmark: collect N expert demos, train BC, run DAgger rounds, report success per round.

    python benchmarks/dagger_benchmark.py --env PickPlace --episodes 200 --steps 3000 \
        --rounds 4 --episodes-per-round 50 --round-steps 1000 --eval-episodes 50 \
        --work /tmp/dagger_bench

Defaults are the current best BC recipe (bc_benchmark.py / README: PickPlace, Panda, low
randomization, 200 demos with DART noise 0.3, front+wrist cameras, aux_weight=1.0,
instruction_aug=8). Round 0 of the table is that BC policy; round k is the policy after k DAgger
rounds. Every policy is evaluated on the same ``--eval-episodes`` fresh episodes (seeds from
EVAL_BASE_SEED, never seen in training) with train- and heldout-split instructions, each with a
95% Wilson interval, then wall-clock minutes per phase and in total are printed. The dataset is
reused if ``--work`` already holds it (collection resumes); the DAgger run is fresh each time
unless ``--resume`` continues it (more ``--rounds`` allowed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", default="PickPlace")
    ap.add_argument("--robot", default="panda")
    ap.add_argument("--randomization", default="low")
    ap.add_argument("--episodes", type=int, default=200, help="expert demonstrations")
    ap.add_argument("--noise", type=float, default=0.3,
                    help="DART noise std on the demos' executed expert actions")
    ap.add_argument("--cameras", default="front,wrist", help="comma-separated cameras")
    ap.add_argument("--image-size", type=int, default=64,
                    help="camera image side in pixels, for the demonstrations, the policy "
                         "(bc.policy.image_size), the rollouts and the evaluation")
    ap.add_argument("--same-color-distractor", type=float, default=0.0,
                    help="training scenes (demonstrations, DAgger rollouts, scene frames) get a "
                         "distractor of the target's colour with this probability; evaluation "
                         "keeps the uniform draw")
    ap.add_argument("--expert", default=None,
                    help="expert factory 'module:factory' for the demonstrations and the DAgger "
                         "labels (default: vla_sim.agents.experts:make_expert; "
                         "vla_sim.agents.experts:make_gated_expert gives Reach's earlier gated "
                         "descent)")
    ap.add_argument("--steps", type=int, default=3000, help="BC gradient steps of policy_0")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--aux-weight", type=float, default=1.0)
    ap.add_argument("--instruction-aug", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--episodes-per-round", type=int, default=50)
    ap.add_argument("--round-steps", type=int, default=1000,
                    help="BC steps per round (warm-started)")
    ap.add_argument("--beta0", type=float, default=0.5)
    ap.add_argument("--beta-decay", type=float, default=0.5)
    ap.add_argument("--mixing", default="step", choices=["step", "episode"])
    ap.add_argument("--workers", type=int, default=2, help="processes for collection, DAgger "
                                                          "rollouts and evaluation")
    ap.add_argument("--eval-episodes", type=int, default=50,
                    help="episodes per split for BC (round 0) and the final policy")
    ap.add_argument("--bc-eval-episodes", type=int, default=None,
                    help="episodes per split for BC (round 0) (default: --eval-episodes)")
    ap.add_argument("--curve-episodes", type=int, default=None,
                    help="episodes per split for the rounds in between (default: "
                         "--eval-episodes; 0 skips them)")
    ap.add_argument("--eval-envs", default=None,
                    help="comma-separated envs to evaluate on (default: --env; for MultiTask, "
                         "each of its four tasks, with their pooled mean)")
    ap.add_argument("--sample-actions", action="store_true",
                    help="evaluate with actions sampled from the policy (seeded per episode) "
                         "instead of its mode")
    ap.add_argument("--work", default="/tmp/vla_sim_dagger_benchmark")
    ap.add_argument("--resume", action="store_true", help="continue the DAgger run in --work")
    ap.add_argument("overrides", nargs="*", help="extra DAggerConfig overrides key=value "
                                                 "(dotted: bc.lr=1e-4)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Worker processes (rollouts, evaluation) inherit this: one torch thread each, or two
    # workers on two cores thrash.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    torch.set_num_threads(args.threads)

    from vla_sim.agents.training.dagger import policy_dir, train_dagger
    from vla_sim.data.collect import CollectConfig, collect, resolve_env_id
    from vla_sim.evaluation import EvalConfig, PolicySpec, evaluate

    cameras = tuple(c.strip() for c in args.cameras.split(",") if c.strip())
    env_id = resolve_env_id(args.env)
    eval_ids = eval_env_ids(env_id, args.eval_envs)
    # Overrides are checked before any work.
    cfg = dagger_config(args, cameras)
    cfg.check_scene_frames()

    work = Path(args.work)
    data_dir, run_dir = work / f"data_{data_tag(args, cameras)}", work / "run"
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    result = collect(CollectConfig(out=str(data_dir), env=args.env, robot=args.robot,
                                   episodes=args.episodes, randomization=args.randomization,
                                   workers=args.workers, image_size=args.image_size,
                                   progress=False, noise=args.noise, cameras=cameras,
                                   same_color_distractor=args.same_color_distractor,
                                   **({"expert": args.expert} if args.expert else {})))
    phases["collect"] = time.perf_counter() - t0
    print(f"collect: {result.episodes} episodes ({result.successes} successful, expert success "
          f"{result.success_rate:.2f}) in {phases['collect']:.1f} s")

    if run_dir.exists() and not args.resume:
        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    dagger = train_dagger(data_dir, run_dir, cfg, resume=args.resume)
    dagger_s = time.perf_counter() - t0
    initial = dagger.initial or {}
    phases["BC (policy_0)"] = float(initial.get("seconds", 0.0))
    phases["DAgger rollouts"] = sum(r["rollout_s"] for r in dagger.history)
    phases["DAgger BC"] = sum(r["train_s"] for r in dagger.history)
    state = json.loads((run_dir / "dagger_state.json").read_text())
    if "scene_frames" in state:
        phases["scene frames"] = float(state["scene_frames"]["seconds"])
    # Data loading and bookkeeping the phases above do not count.
    phases["other (DAgger)"] = max(0.0, dagger_s - sum(
        v for k, v in phases.items() if k != "collect"))

    ecfg = dict(env_ids=eval_ids, robot=args.robot, episodes=args.eval_episodes,
                splits=["train", "heldout"], randomization=[args.randomization],
                image_size=args.image_size, cameras=list(cameras), workers=args.workers,
                sample_actions=args.sample_actions)
    rows, t_eval = [], time.perf_counter()
    last = dagger.rounds_completed
    curve = args.eval_episodes if args.curve_episodes is None else args.curve_episodes
    bc_n = args.eval_episodes if args.bc_eval_episodes is None else args.bc_eval_episodes
    for k in range(last + 1):
        n = args.eval_episodes if k == last else bc_n if k == 0 else curve
        if n < 1:
            continue
        t0 = time.perf_counter()
        spec = PolicySpec("checkpoint", str(policy_dir(run_dir, k) / "last"))
        res = evaluate(spec, EvalConfig(**{**ecfg, "episodes": n}))
        rec = dagger.history[k - 1] if k else None
        per_env = {e: [res.cell(e, s, args.randomization) for s in ("train", "heldout")]
                   for e in eval_ids}
        rows.append((k, rec, per_env, time.perf_counter() - t0))
    phases["evaluation"] = time.perf_counter() - t_eval

    print(f"\nDAgger on {env_id} ({args.robot}, {args.randomization}, cameras "
          f"{'+'.join(cameras)}): {args.episodes} demos, BC {args.steps} steps, then "
          f"{dagger.rounds_completed} rounds x {args.episodes_per_round} rollouts "
          f"({args.mixing} mixing), {args.round_steps} BC steps each; success on "
          f"{args.eval_episodes} eval episodes per split (95% Wilson CI"
          f"{', actions sampled' if args.sample_actions else ''})")
    head = (f"{'round':>5} {'beta':>6} {'rollout ok':>10} {'learner%':>8} {'frames':>7} "
            f"{'val loss':>9} {'train split':>20} {'heldout split':>20} {'min':>5}")
    print(head)
    print("-" * len(head))
    for k, rec, per_env, eval_s in rows:
        if rec is None:
            cols = [f"{k:>5}", f"{'BC':>6}", f"{'-':>10}", f"{'-':>8}",
                    f"{initial.get('frames', 0):>7}", _loss(initial.get("val_loss"))]
            minutes = (initial.get("seconds", 0.0) + eval_s) / 60
        else:
            cols = [f"{k:>5}", f"{rec['beta']:>6.3f}", f"{rec['rollout_success']:>10.2f}",
                    f"{100 * rec['learner_step_fraction']:>8.0f}", f"{rec['dataset_frames']:>7}",
                    _loss(rec["val_loss"])]
            minutes = (rec["seconds"] + eval_s) / 60
        for name, cells in _table_cells(per_env):
            split_cols = [f"{rate:.2f} [{lo:.2f}-{hi:.2f}]" for rate, lo, hi, _ in cells]
            label = "" if len(per_env) == 1 else f"  {name}"
            print(" ".join(cols + [f"{s:>20}" for s in split_cols] + [f"{minutes:>5.1f}"])
                  + f"  n={cells[0][3]}{label}")
    print("\nwall-clock minutes per phase:")
    for name, seconds in phases.items():
        print(f"  {name:<16} {seconds / 60:7.2f}")
    print(f"  {'total':<16} {sum(phases.values()) / 60:7.2f}")
    return 0



def dagger_config(args: argparse.Namespace, cameras: tuple[str, ...]) -> Any:
    """The run's DAggerConfig: the command's flags, then its ``key=value`` overrides (which
    win); a bad key or value raises before any work."""
    from vla_sim.agents.training.dagger import DAggerConfig
    from vla_sim.config import load_config

    cfg = load_config(DAggerConfig, overrides=[
        f"rounds={args.rounds}", f"episodes_per_round={args.episodes_per_round}",
        f"round_steps={args.round_steps}", f"beta0={args.beta0}",
        f"beta_decay={args.beta_decay}", f"mixing={args.mixing}", f"workers={args.workers}",
        f"bc.steps={args.steps}", f"bc.batch_size={args.batch_size}",
        f"bc.num_threads={args.threads}", f"bc.aux_weight={args.aux_weight}",
        f"bc.instruction_aug={args.instruction_aug}", f"bc.policy.cameras=[{','.join(cameras)}]",
        f"bc.policy.image_size={args.image_size}", "bc.checkpoint_every_grad_steps=1000000",
        "bc.progress=false", *args.overrides])
    if cfg.bc.policy.image_size != args.image_size:
        raise ValueError(f"bc.policy.image_size={cfg.bc.policy.image_size} contradicts "
                         f"--image-size {args.image_size} (the demonstrations' size): give "
                         "--image-size only")
    return cfg


def data_tag(args: argparse.Namespace, cameras: tuple[str, ...]) -> str:
    """The demonstrations' folder name under ``--work``: one per collection setting, so runs
    with other settings never reuse (or resume into) each other's dataset."""
    parts = [args.env, str(args.episodes), f"n{args.noise}", "+".join(cameras),
             args.randomization, args.robot]
    if args.image_size != 64:  # 64 px datasets keep the names they had before the flag
        parts.append(f"{args.image_size}px")
    if args.same_color_distractor:
        parts.append(f"twins{args.same_color_distractor}")
    if args.expert:  # the factory's name: demonstrations of two experts never mix
        parts.append(args.expert.rpartition(":")[2])
    return "_".join(parts)

def eval_env_ids(env_id: str, eval_envs: str | None) -> list[str]:
    """The envs the policies are evaluated on: ``--eval-envs``, else MultiTask's four tasks
    (so each task's success shows), else the training env."""
    from vla_sim.envs.registration import ENV_IDS, resolve_env_id

    if eval_envs:
        return [resolve_env_id(e.strip()) for e in eval_envs.split(",") if e.strip()]
    if ENV_IDS.get(env_id, {}).get("task") == "multitask":
        return [e for e, kw in ENV_IDS.items() if kw["task"] != "multitask"]
    return [env_id]


def _table_cells(per_env: dict) -> list[tuple[str, list[tuple[float, float, float, int]]]]:
    """(name, [(rate, ci_low, ci_high, n) per split]) per env, then with several envs their
    pooled mean (equal n per env, so the pooled rate is the mean of the rates) and its
    Wilson interval."""
    from vla_sim.evaluation.stats import wilson_interval

    rows = [(e.split("/")[-1], [(c.success_rate, c.ci_low, c.ci_high, c.episodes) for c in cells])
            for e, cells in per_env.items()]
    if len(per_env) > 1:
        pooled = []
        for j in range(len(next(iter(per_env.values())))):
            k = sum(cells[j].successes for cells in per_env.values())
            n = sum(cells[j].episodes for cells in per_env.values())
            pooled.append((k / n, *wilson_interval(k, n), n))
        rows.append(("mean of the tasks", pooled))
    return rows


def _loss(value: float | None) -> str:
    return f"{'n/a':>9}" if value is None else f"{value:>9.4f}"


if __name__ == "__main__":
    raise SystemExit(main())
