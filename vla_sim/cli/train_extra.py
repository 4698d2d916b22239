"""Extra ``vla-sim train`` subcommands and BC options: continual, multitask, latent; BC
``--init-vision`` (VL pre-trained encoder) and ``--curriculum``. Wiring only; the logic lives in
``vla_sim.agents.training``.

    vla-sim train continual --policy CKPT --data NEW --replay-data OLD [OLD ...] --out DIR
        [--eval-env Reach --eval-env Push] [--config continual.yaml] [key=value ...]
    vla-sim train multitask --data D [D ...] --out DIR --heads per-task|shared
        [--task-weights reach=1,push=2] [--config bc.yaml] [key=value ...]
    vla-sim train latent --data D --action-ae AE_DIR --out RUN [--config bc.yaml] [key=value ...]
    vla-sim train bc ... --init-vision VL_DIR --curriculum none,low,medium,high

``vla_sim/cli/train.py`` calls :func:`add_extra_trainers` on its trainer subparsers and
:func:`add_bc_options` on its ``bc`` parser, and dispatches ``bc`` to :func:`run_bc_extra`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable


# ----------------------------------------------------------------------------------- helpers
def _env_id(name: str) -> str:
    from vla_sim.data.collect import resolve_env_id

    return resolve_env_id(name)


def task_env_id(task: str) -> str:
    """Task name (``reach``) -> its single-task env id (``vla_sim/Reach-v0``)."""
    from vla_sim.envs.registration import ENV_IDS

    for env_id, kwargs in ENV_IDS.items():
        if kwargs.get("task") == task:
            return env_id
    raise ValueError(f"no env id for task {task!r}; known: "
                     f"{sorted(k['task'] for k in ENV_IDS.values())}")


def _success(policy: Any, env_id: str, episodes: int, env_kwargs: dict) -> float:
    from vla_sim.agents.training.common import rollout_success_rate
    from vla_sim.utils.seeding import EVAL_BASE_SEED

    return rollout_success_rate(policy, env_id, episodes, EVAL_BASE_SEED, env_kwargs)


def _env_kwargs(policy_cfg: Any, randomization: str) -> dict:
    return {"image_size": policy_cfg.image_size, "cameras": tuple(policy_cfg.cameras),
            "randomization": randomization}


def _dataset(root: str, max_episodes: int | None = None):
    from vla_sim.data.torch_dataset import VLADataset

    ds = VLADataset(root)
    if max_episodes is not None:
        ds = VLADataset(root, episodes=list(range(min(max_episodes, ds.reader.num_episodes))))
    return ds


def _common(p: argparse.ArgumentParser, config_help: str) -> None:
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--config", default=None, help=config_help)
    p.add_argument("overrides", nargs="*", help="config overrides key=value (dotted keys)")
    p.add_argument("--max-episodes", type=int, default=None,
                   help="use only the first N episodes of each dataset")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per success check")
    p.add_argument("--randomization", default="low", choices=["none", "low", "medium", "high"],
                   help="randomization level of the success checks")


# ---------------------------------------------------------------------------------- parsers
def add_extra_trainers(sub) -> None:
    """Add ``continual``, ``multitask`` and ``latent`` to ``vla-sim train``'s subparsers."""
    add_continual_parser(sub)
    add_multitask_parser(sub)
    add_latent_parser(sub)


def add_continual_parser(sub) -> None:
    p = sub.add_parser("continual", help="fine-tune on a new task with reservoir replay",
                       description="Fine-tune a trained policy on a new task's demonstrations, "
                                   "replaying earlier tasks' data from a reservoir buffer at a "
                                   "lower LR; prints a forgetting report.")
    p.add_argument("--policy", required=True, help="trained policy checkpoint folder")
    p.add_argument("--data", required=True, help="new task's dataset folder")
    p.add_argument("--replay-data", nargs="*", default=[], help="earlier tasks' dataset folders")
    p.add_argument("--eval-env", action="append", default=[],
                   help="env to measure before/after (repeat: one per task; e.g. Reach)")
    _common(p, "ContinualConfig YAML file (replay_size, replay_ratio, lr_scale, steps, bc.*)")
    p.set_defaults(func=run_continual)


def add_multitask_parser(sub) -> None:
    p = sub.add_parser("multitask", help="multi-task BC: per-task or shared action heads",
                       description="Behaviour cloning on several tasks with a shared encoder and "
                                   "per-task action heads (or one shared head), task-weighted loss.")
    p.add_argument("--data", required=True, nargs="+", help="dataset folder(s); tasks from episodes")
    add_multitask_options(p)
    _common(p, "BCConfig YAML file")
    p.add_argument("--no-eval", action="store_true", help="skip the per-task success check")
    p.set_defaults(func=run_multitask)


def add_multitask_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--heads", default="per-task", choices=["per-task", "shared"],
                   help="per-task action heads on a shared encoder, or one shared head")
    p.add_argument("--task-weights", default=None,
                   help="loss weight per task, e.g. reach=1,push=2 (default 1 each)")


def add_latent_parser(sub) -> None:
    p = sub.add_parser("latent", help="BC that predicts action-chunk latents (see pretrain action)",
                       description="Behaviour cloning of a policy whose head predicts the latent of "
                                   "a pre-trained action-chunk autoencoder.")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--action-ae", required=True, help="folder written by vla-sim pretrain action")
    _common(p, "BCConfig YAML file")
    p.set_defaults(func=run_latent)


def add_bc_options(bc: argparse.ArgumentParser) -> None:
    """Options for ``vla-sim train bc`` handled by :func:`run_bc_extra`."""
    bc.add_argument("--init-vision", default=None,
                    help="start from the vision encoder of a vla-sim pretrain vl folder")
    bc.add_argument("--curriculum", default=None,
                    help="comma-separated randomization levels (e.g. none,low,medium,high) or "
                         "high@0,high@0.5,high@1 (level@strength): the in-sim checks run at the "
                         "current stage, which advances when success >= --curriculum-threshold")
    bc.add_argument("--curriculum-threshold", type=float, default=0.8)


# --------------------------------------------------------------------------------- commands
def run_continual(args: argparse.Namespace) -> int:
    from vla_sim.agents.policies import load_policy, save_policy
    from vla_sim.agents.training.bc import DemoArrays
    from vla_sim.agents.training.continual import (ContinualConfig, finetune_with_replay,
                                                   forgetting_report, format_forgetting_report)
    from vla_sim.config import load_config
    from vla_sim.utils.io import atomic_write_json

    cfg = load_config(ContinualConfig, args.config, args.overrides)
    policy = load_policy(args.policy)
    new_ds = _dataset(args.data, args.max_episodes)
    new = DemoArrays.from_dataset(new_ds)
    old = [DemoArrays.from_dataset(_dataset(d, args.max_episodes)) for d in args.replay_data]
    envs = [_env_id(e) for e in args.eval_env]
    kwargs = _env_kwargs(policy.config, args.randomization)
    before = {e: _success(policy, e, args.eval_episodes, kwargs) for e in envs}
    res = finetune_with_replay(policy, new, old, cfg)
    after = {e: _success(policy, e, args.eval_episodes, kwargs) for e in envs}
    collect_env = new_ds.reader.info.get("vla_sim", {}).get("collect", {}).get("env")
    new_env = _env_id(collect_env) if collect_env else None  # labelled "gain", not "forgetting"
    report = forgetting_report(before, after, new_task=new_env)
    save_policy(policy, args.out, meta={"trainer": "continual", "report": report,
                                         "replay_per_batch": res.replay_per_batch})
    atomic_write_json(Path(args.out) / "forgetting.json", report)
    print(f"continual: {cfg.steps} steps at lr {cfg.lr_scale * cfg.bc.lr:.2e}, "
          f"{res.replay_per_batch}/{cfg.bc.batch_size} replayed per batch "
          f"(buffer {0 if res.buffer is None else len(res.buffer)} of "
          f"{0 if res.buffer is None else res.buffer.seen} seen); final loss "
          f"{res.train_losses[-1]:.4f}; saved to {args.out}")
    if envs:
        print(format_forgetting_report(report))
    return 0


def run_multitask(args: argparse.Namespace) -> int:
    from vla_sim.agents.training.bc import BCConfig
    from vla_sim.agents.training.multitask import (MultiHeadVLAPolicy, MultiTaskConfig,
                                                   MultiTaskData, read_task_weights,
                                                   train_multitask)
    from vla_sim.config import load_config
    from vla_sim.utils.io import atomic_write_json

    bc = load_config(BCConfig, args.config, args.overrides)
    cfg = MultiTaskConfig(heads=args.heads, task_weights=read_task_weights(args.task_weights), bc=bc)
    data = MultiTaskData.concat([MultiTaskData.from_dataset(_dataset(d, args.max_episodes))
                                 for d in args.data])
    res = train_multitask(data, cfg, out_dir=args.out)
    per_task = {}
    if not args.no_eval and args.eval_episodes > 0:
        kwargs = _env_kwargs(bc.policy, args.randomization)
        for task in data.task_names:
            per_task[task] = _success(res.policy, task_env_id(task), args.eval_episodes, kwargs)
    atomic_write_json(Path(args.out) / "multitask.json",
                      {"heads": args.heads, "tasks": data.task_names, "success": per_task,
                       "val_loss_per_task": res.val_loss_per_task,
                       "classifier_accuracy": res.classifier_accuracy})
    kind = "per-task heads" if isinstance(res.policy, MultiHeadVLAPolicy) else "shared head"
    print(f"multitask ({kind}) on {data.task_names}: final loss {res.train_losses[-1]:.4f}; "
          f"val loss per task {res.val_loss_per_task}; success per task {per_task}; "
          f"saved to {args.out}")
    return 0


def run_latent(args: argparse.Namespace) -> int:
    import dataclasses
    import shutil

    from vla_sim.agents.training.bc import BCConfig, DemoArrays, train_bc
    from vla_sim.agents.training.pretrain_action import (AE_CONFIG, AE_WEIGHTS, latent_demos,
                                                         load_action_ae)
    from vla_sim.config import load_config

    ae = load_action_ae(args.action_ae)
    cfg = load_config(BCConfig, args.config, args.overrides)
    cfg.policy = dataclasses.replace(cfg.policy, action_dim=ae.cfg.latent_dim)
    data = latent_demos(DemoArrays.from_dataset(_dataset(args.data, args.max_episodes)), ae)
    result = train_bc(data, args.out, cfg)
    for sub in ("last", "best"):
        if (Path(args.out) / sub).is_dir():
            for name in (AE_CONFIG, AE_WEIGHTS):
                shutil.copy2(Path(args.action_ae) / name, Path(args.out) / sub / name)
    print(f"latent BC: {result.steps} steps, final loss {result.train_losses[-1]:.4f}; load with "
          f"vla_sim.agents.training.pretrain_action.load_latent_policy('{args.out}/best')")
    return 0


def parse_curriculum(text: str, threshold: float):
    """``none,low,high@0.5`` -> a CurriculumConfig."""
    from vla_sim.agents.training.curriculum import CurriculumConfig, CurriculumStage

    stages = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        level, _, strength = part.partition("@")
        stages.append(CurriculumStage(level, float(strength) if strength else None))
    return CurriculumConfig(stages=stages, threshold=threshold)


def bc_init_fn(args: argparse.Namespace) -> Callable | None:
    """``policy -> None`` copying the pre-trained vision encoder, or None without --init-vision."""
    if not getattr(args, "init_vision", None):
        return None
    from vla_sim.agents.training.pretrain_vl import init_policy_vision, load_vl

    model, vcfg = load_vl(args.init_vision)
    return lambda policy: init_policy_vision(policy, model, vcfg.camera)


def run_bc_extra(args: argparse.Namespace) -> int:
    """``vla-sim train bc`` with --init-vision / --curriculum; plain run_bc without them."""
    from vla_sim.cli import train as train_cli

    init = None if args.resume else bc_init_fn(args)
    if init is None and not getattr(args, "curriculum", None):
        return train_cli.run_bc(args)
    from vla_sim.agents.training.bc import BCConfig, DemoArrays, train_bc
    from vla_sim.config import load_config
    from vla_sim.utils.io import atomic_write_json

    cfg = load_config(BCConfig, args.config, args.overrides)
    dataset = _dataset(args.data, args.max_episodes)
    data = DemoArrays.from_dataset(dataset)
    eval_fn = train_cli._eval_fn(args, cfg, dataset)
    scheduler = None
    if args.curriculum:
        from vla_sim.agents.training.curriculum import CurriculumScheduler, rollout_stage_success
        from vla_sim.utils.seeding import EVAL_BASE_SEED

        collect = dataset.reader.info.get("vla_sim", {}).get("collect", {})
        env_id = args.eval_env or collect.get("env")
        if not env_id or env_id == "none":
            raise ValueError("--curriculum needs in-sim checks: give --eval-env")
        scheduler = CurriculumScheduler(parse_curriculum(args.curriculum, args.curriculum_threshold))
        kwargs = {"image_size": cfg.policy.image_size, "cameras": tuple(cfg.policy.cameras)}
        eval_fn = scheduler.bc_eval_fn(lambda policy, stage: rollout_stage_success(
            policy, stage, args.eval_episodes, EVAL_BASE_SEED, _env_id(env_id), kwargs))
    result = train_bc(data, args.out, cfg, resume=args.resume, eval_fn=eval_fn, init_fn=init)
    if scheduler is not None:
        atomic_write_json(Path(args.out) / "curriculum.json", scheduler.state_dict())
        print(f"curriculum: stage {scheduler.stage_index} ({scheduler.stage.name}); advances "
              f"{[(a.step, a.to_name) for a in scheduler.history]}")
    print(f"bc: {result.steps} steps; final train loss {result.train_losses[-1]:.4f}; best by "
          f"{result.best_kind} = {result.best_metric}; checkpoints in {result.out_dir}")
    return 0
