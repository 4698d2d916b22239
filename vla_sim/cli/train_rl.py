"""``vla-sim train ppo`` and ``vla-sim train reinforce``: RL fine-tuning from a BC checkpoint.

    vla-sim train ppo --init BC_DIR --env vla_sim/PickPlace-v0 --reward language \\
        --steps 20000 --n-envs 4 --out runs/ppo [--config ppo.yaml] [key=value ...]
    vla-sim train reinforce --init BC_DIR --env vla_sim/Reach-v0 --reward dense --out runs/rf

Overrides are PPOConfig / ReinforceConfig keys (``lr=1e-4 bc_coef=0.5``); the flags above win
over them. The run's ``best/`` and ``last/`` load with ``vla-sim eval --policy RUN/best``.
"""

from __future__ import annotations

import argparse

from vla_sim.envs.wrappers.language_reward import REWARD_MODES


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--init", default=None,
                        help="BC checkpoint folder to start from (model.safetensors + config.json)")
    parser.add_argument("--env", default=None, help="env id, e.g. vla_sim/PickPlace-v0")
    parser.add_argument("--reward", default=None, choices=REWARD_MODES, help="reward mode")
    parser.add_argument("--steps", type=int, default=None, help="env steps in total")
    parser.add_argument("--n-envs", type=int, default=None, help="parallel envs")
    parser.add_argument("--randomization", default=None, help="none|low|medium|high")
    parser.add_argument("--robot", default=None, help="panda|iiwa")
    parser.add_argument("--out", required=True, help="run folder: best/, last/, tb/")
    parser.add_argument("--config", default=None, help="YAML config file")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in --out from checkpoints/last_state "
                             "(same config and --init)")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")


def _load(cls, args: argparse.Namespace):
    from vla_sim.config import load_config

    flags = {"env_id": args.env, "reward": args.reward, "total_steps": args.steps,
             "n_envs": args.n_envs, "randomization": args.randomization, "robot": args.robot}
    overrides = list(args.overrides) + [f"{k}={v}" for k, v in flags.items() if v is not None]
    return load_config(cls, args.config, overrides)


def add_ppo_parser(sub) -> None:
    parser = sub.add_parser("ppo", help="PPO fine-tuning from a BC checkpoint",
                            description="PPO (Stable-Baselines3) fine-tuning of a BC policy with "
                                        "a value warm-up and a decaying KL toward the BC policy.")
    _common(parser)
    parser.set_defaults(func=run_ppo)


def add_reinforce_parser(sub) -> None:
    parser = sub.add_parser("reinforce", help="REINFORCE fine-tuning from a BC checkpoint",
                            description="REINFORCE with a value baseline on whole episodes.")
    _common(parser)
    parser.set_defaults(func=run_reinforce)


def _report(name: str, result) -> None:
    evals = ", ".join(f"{s}: {r:.2f}" for s, r in result.eval_history)
    print(f"{name}: {result.steps} env steps in {result.wall_s:.1f} s; success by env step "
          f"[{evals}]; best {result.best_success}; checkpoints in {result.out_dir}")


def run_ppo(args: argparse.Namespace) -> int:
    from vla_sim.agents.training.ppo import PPOConfig, train_ppo

    cfg = _load(PPOConfig, args)
    _report("ppo", train_ppo(cfg, args.out, init=args.init, resume=args.resume))
    return 0


def run_reinforce(args: argparse.Namespace) -> int:
    from vla_sim.agents.training.reinforce import ReinforceConfig, train_reinforce

    cfg = _load(ReinforceConfig, args)
    _report("reinforce", train_reinforce(cfg, args.out, init=args.init, resume=args.resume))
    return 0
