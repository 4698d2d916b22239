"""``vla-sim train TRAINER``: every trainer's subcommand, wired here.

    vla-sim train bc --data DATA_DIR --out RUN_DIR [--config bc.yaml] [key=value ...] [--resume]
        [--init-vision VL_DIR] [--curriculum none,low,medium,high]
    torchrun --nproc_per_node N -m vla_sim.cli.main train bc ...   (data-parallel, same flags)

Every BCConfig field is a flag (``--steps 2000``); nested ones are dotted overrides
(``policy.head=discrete``); ``--config bc.yaml`` loads a file. Flags > overrides > file. The other trainers
live in their own modules: ``train_rl`` (ppo, reinforce), ``train_extra`` (continual,
multitask, latent), ``train_dagger`` (dagger).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Callable

from vla_sim.cli import train_dagger, train_extra, train_rl
from vla_sim.cli.common import (
    add_eval_check_arguments,
    dataset_eval_fn,
    env_id,
    open_training_dataset,
    success,
)
from vla_sim.config import add_config_arguments, config_from_args

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a policy (bc, dagger, ppo, ...)",
                                   description="Train a policy.")
    sub = parser.add_subparsers(dest="trainer", required=True, metavar="TRAINER")
    add_bc_parser(sub)
    train_dagger.add_dagger_parser(sub)
    train_rl.add_ppo_parser(sub)
    train_rl.add_reinforce_parser(sub)
    train_rl.add_rlpd_parser(sub)
    train_extra.add_extra_trainers(sub)


def add_bc_parser(sub) -> None:
    from vla_sim.agents.training.configs import BCConfig

    bc = sub.add_parser("bc", help="behaviour cloning from demonstrations",
                        description="Behaviour cloning of the VLA policy from a dataset folder.")
    bc.add_argument("--data", required=True, help="dataset folder (vla-sim collect output)")
    bc.add_argument("--out", required=True, help="run folder: checkpoints/, last/, best/, tb/")
    bc.add_argument("--resume", action="store_true", help="continue the run in --out")
    bc.add_argument("--max-episodes", type=int, default=None,
                    help="use only the first N episodes of the dataset")
    add_eval_check_arguments(bc)
    bc.add_argument("--init-vision", default=None,
                    help="start from the vision encoder of a vla-sim pretrain vl folder")
    bc.add_argument("--curriculum", default=None,
                    help="comma-separated randomization levels (e.g. none,low,medium,high) or "
                         "high@0,high@0.5,high@1 (level@strength): the in-sim checks run at the "
                         "current stage, which advances when success >= --curriculum-threshold")
    bc.add_argument("--curriculum-threshold", type=float, default=0.8)
    add_config_arguments(bc, BCConfig)
    bc.set_defaults(func=run_bc)


def run_bc(args: argparse.Namespace) -> int:
    """BC from a dataset folder; under ``torchrun`` every process runs this (rank 0 writes)."""
    from vla_sim.agents.training import distributed
    from vla_sim.agents.training.configs import BCConfig

    cfg = config_from_args(BCConfig, args)  # unknown keys fail before any work
    with distributed.session(cfg.device) as dist:
        return _run_bc(args, cfg, dist)


def _run_bc(args: argparse.Namespace, cfg, dist) -> int:
    from vla_sim.agents.training.bc import train_bc
    from vla_sim.data.demos import DemoArrays
    from vla_sim.data.text_cache import CachedTextEncoder
    from vla_sim.utils.io import atomic_write_json

    # Rank 0 first: it builds the frame cache the others then only verify.
    dataset = dist.main_first(lambda: open_training_dataset(args.data, args.max_episodes))
    data = DemoArrays.from_dataset(dataset)
    eval_fn = dataset_eval_fn(dataset, args.eval_env, args.eval_episodes, cfg.policy)
    scheduler = None
    if args.curriculum:
        scheduler, eval_fn = _curriculum(args, cfg, dataset)
    if eval_fn is not None:
        _check_simulator(args)
    init = None if args.resume else _vision_init(args.init_vision)
    # Instruction features from the dataset's cache (computed and added there when missing and
    # the encoder is installed), so a machine without the encoder trains from a prepared dataset.
    hint = (f"vla-sim dataset cache-text {args.data} --text-encoder {cfg.policy.text_encoder}"
            + (f" --instruction-aug {cfg.instruction_aug} --seed {cfg.seed}"
               if cfg.instruction_aug > 0 else ""))
    encoder = CachedTextEncoder([args.data], cfg.policy.text_encoder, hint=hint)
    result = train_bc(data, args.out, cfg, resume=args.resume, eval_fn=eval_fn, init_fn=init,
                      encoder=encoder)
    if not dist.is_main:
        return 0
    if scheduler is not None:
        atomic_write_json(Path(args.out) / "curriculum.json", scheduler.state_dict())
        print(f"curriculum: stage {scheduler.stage_index} ({scheduler.stage.name}); advances "
              f"{[(a.step, a.to_name) for a in scheduler.history]}")
    procs = f" on {dist.world_size} processes" if dist.active else ""
    print(f"bc: {result.steps} steps in {result.wall_s:.1f} s ({result.samples_per_s:.0f} "
          f"samples/s{procs}); final train loss {result.train_losses[-1]:.4f}; val loss "
          f"{'n/a' if result.val_loss is None else f'{result.val_loss:.4f}'}; best by "
          f"{result.best_kind} = {result.best_metric}; checkpoints in {result.out_dir}")
    return 0


def _check_simulator(args: argparse.Namespace) -> None:
    """In-sim success checks need PyBullet: say so before training, not after it."""
    try:
        import pybullet  # noqa: F401
    except ImportError:
        raise ValueError("in-sim success checks need pybullet, which cannot be imported here "
                         "(a training-only machine?): pass --eval-env none to train without "
                         "them, and evaluate the checkpoint where PyBullet is installed") from None


def _vision_init(init_vision: str | None) -> Callable | None:
    """``policy -> None`` copying a pre-trained vision encoder, or None without one."""
    if not init_vision:
        return None
    from vla_sim.agents.training.pretrain_vl import init_policy_vision, load_vl

    model, vcfg = load_vl(init_vision)
    return lambda policy: init_policy_vision(policy, model, vcfg.camera)


def _curriculum(args: argparse.Namespace, cfg, dataset):
    """The curriculum scheduler and the eval function that checks success at its stage."""
    from vla_sim.agents.training.curriculum import (
        CurriculumConfig,
        CurriculumScheduler,
        CurriculumStage,
    )

    collect = dataset.reader.info.get("vla_sim", {}).get("collect", {})
    target = args.eval_env or collect.get("env")
    if not target or target == "none":
        raise ValueError("--curriculum needs in-sim checks: give --eval-env")
    stages = []
    for part in (p.strip() for p in args.curriculum.split(",") if p.strip()):
        level, _, strength = part.partition("@")
        stages.append(CurriculumStage(level, float(strength) if strength else None))
    scheduler = CurriculumScheduler(CurriculumConfig(stages=stages,
                                                     threshold=args.curriculum_threshold))
    kwargs = {"image_size": cfg.policy.image_size, "cameras": tuple(cfg.policy.cameras)}
    target = env_id(target)
    eval_fn = scheduler.bc_eval_fn(lambda policy, stage: success(
        policy, stage.env_id or target, args.eval_episodes,
        {**kwargs, "randomization": stage.randomization()}))
    return scheduler, eval_fn
