"""``vla-sim train bc``: behaviour cloning from a demonstration dataset.

    vla-sim train bc --data DATA_DIR --out RUN_DIR [--config bc.yaml] [key=value ...] [--resume]

Overrides are dotted BCConfig keys, e.g. ``steps=2000 policy.head=discrete``. Other trainers
(PPO, REINFORCE) plug in as ``vla-sim train <name>`` when their module in
``vla_sim.agents.training`` defines ``add_cli_parser(subparsers)``; ``vla_sim.cli.train_extra``
(if present) adds continual/multitask/latent and bc's ``--init-vision``/``--curriculum``.
"""

from __future__ import annotations

import argparse
import importlib

# trainer modules that may add their own ``train <name>`` subcommand
OPTIONAL_TRAINERS = ("ppo", "reinforce", "pretrain")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a policy (bc, ...)",
                                   description="Train a policy.")
    sub = parser.add_subparsers(dest="trainer", required=True, metavar="TRAINER")
    bc = sub.add_parser("bc", help="behaviour cloning from demonstrations",
                        description="Behaviour cloning of the VLA policy from a dataset folder.")
    bc.add_argument("--data", required=True, help="dataset folder (vla-sim collect output)")
    bc.add_argument("--out", required=True, help="run folder: checkpoints/, last/, best/, tb/")
    bc.add_argument("--config", default=None, help="BCConfig YAML file")
    bc.add_argument("overrides", nargs="*", help="BCConfig overrides key=value (dotted keys)")
    bc.add_argument("--resume", action="store_true", help="continue the run in --out")
    bc.add_argument("--max-episodes", type=int, default=None,
                    help="use only the first N episodes of the dataset")
    bc.add_argument("--eval-env", default=None,
                    help="env id for in-sim success checks (default: the dataset's env, if "
                         "recorded); 'none' disables them")
    bc.add_argument("--eval-episodes", type=int, default=10,
                    help="episodes per in-sim check (eval seeds, train instructions)")
    bc.set_defaults(func=run_bc)
    try:  # continual / multitask / latent trainers and bc's --init-vision / --curriculum
        from vla_sim.cli import train_extra
    except ImportError:
        train_extra = None
    if train_extra is not None:
        train_extra.add_bc_options(bc)
        bc.set_defaults(func=train_extra.run_bc_extra)
        train_extra.add_extra_trainers(sub)
    for name in OPTIONAL_TRAINERS:
        try:
            module = importlib.import_module(f"vla_sim.agents.training.{name}")
        except ImportError:
            continue
        if hasattr(module, "add_cli_parser"):
            module.add_cli_parser(sub)


def run_bc(args: argparse.Namespace) -> int:
    from vla_sim.agents.training.bc import BCConfig, DemoArrays, train_bc
    from vla_sim.config import load_config

    cfg = load_config(BCConfig, args.config, args.overrides)  # unknown keys fail before any work
    from vla_sim.data.torch_dataset import VLADataset

    dataset = VLADataset(args.data)
    if args.max_episodes is not None:
        dataset = VLADataset(args.data, episodes=list(range(min(args.max_episodes,
                                                                dataset.reader.num_episodes))))
    data = DemoArrays.from_dataset(dataset)
    eval_fn = _eval_fn(args, cfg, dataset)
    result = train_bc(data, args.out, cfg, resume=args.resume, eval_fn=eval_fn)
    print(f"bc: {result.steps} steps in {result.wall_s:.1f} s ({result.samples_per_s:.0f} "
          f"samples/s); final train loss {result.train_losses[-1]:.4f}; val loss "
          f"{'n/a' if result.val_loss is None else f'{result.val_loss:.4f}'}; best by "
          f"{result.best_kind} = {result.best_metric}; checkpoints in {result.out_dir}")
    return 0


def _eval_fn(args, cfg, dataset):
    """In-sim success check on the dataset's env (as recorded by ``vla-sim collect``)."""
    collect = dataset.reader.info.get("vla_sim", {}).get("collect", {})
    env_id = args.eval_env or collect.get("env")
    if not env_id or env_id == "none" or args.eval_episodes < 1:
        return None
    from vla_sim.agents.training.common import rollout_success_rate
    from vla_sim.utils.seeding import EVAL_BASE_SEED

    env_kwargs = {"image_size": cfg.policy.image_size, "cameras": tuple(cfg.policy.cameras)}
    for key in ("robot", "randomization"):
        if key in collect:
            env_kwargs[key] = collect[key]
    return lambda policy: rollout_success_rate(policy, env_id, args.eval_episodes,
                                               EVAL_BASE_SEED, env_kwargs)
