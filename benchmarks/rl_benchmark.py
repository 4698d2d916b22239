"""RL fine-tuning benchmark: language-reward cost and quality, then BC vs BC+PPO / BC+REINFORCE /
BC+RLPD.

Part 1 (no checkpoint needed): the language reward's step-time overhead, and the correlation of
its potential with the task's dense reward along scripted-expert and random trajectories, for
each grounding (``roles`` is the default; ``instruction`` is the naive pooled baseline).

Part 2 (``--bc CHECKPOINT``): success of the BC policy, then of BC+PPO, BC+REINFORCE and
BC+RLPD (``--algos rlpd --demos BC_DATASET``: off-policy, demonstrations in every batch) after
the same env-step budget for each reward (sparse, dense, language, mixed), with wall-clock, env
steps/s, time per update and the wall-clock split (rollouts / updates / evaluation). Evaluation:
``--eval-seeds x --eval-repeats`` episodes from ``EVAL_BASE_SEED`` (train instructions). Each run
folder (``--out``/<algo>_<reward>) gets ``curves.png`` (in-training success vs env steps and
wall-clock), ``curve.csv`` and ``summary.json``.

    python benchmarks/rl_benchmark.py --part reward --episodes 4
    python benchmarks/rl_benchmark.py --part rl --bc runs/bc/best --steps 20000 --n-envs 4
    # a wall-clock budget and config overrides (each goes to the config that has the field)
    python benchmarks/rl_benchmark.py --part rl --bc runs/bc/best --algos ppo --rewards dense \
        --steps 400000 --max-minutes 60 lr=5e-5 sil_coef=1.0 sil_batches=16
    # the asymmetric critic (default) against the symmetric one, frozen vision, 2 env processes
    python benchmarks/rl_benchmark.py --part rl --bc runs/bc/best --algos ppo --rewards dense \
        --n-envs 2 --freeze-vision --no-asymmetric-critic --out runs/rl_benchmark_sym
    # RLPD from the same checkpoint, its BC dataset replayed into the demonstration buffer
    python benchmarks/rl_benchmark.py --part rl --bc runs/bc/best --demos data/pick_place \
        --algos rlpd --rewards dense --steps 400000 --max-minutes 60 --n-envs 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import vla_sim  # noqa: F401
from vla_sim.agents.experts import make_expert
from vla_sim.agents.training.rl_common import format_throughput
from vla_sim.envs.wrappers.language_reward import REWARD_MODES, LanguageRewardWrapper
from vla_sim.language.reward import GROUNDINGS, LanguageReward
from vla_sim.utils.seeding import TRAIN_BASE_SEED, episode_seed


def reward_part(args: argparse.Namespace) -> None:
    from vla_sim.language.encoder import get_text_encoder

    encoder = get_text_encoder()
    rewards = {g: LanguageReward(encoder, grounding=g) for g in GROUNDINGS}
    make = lambda: gym.make(args.env, robot="panda", image_size=args.image_size,  # noqa: E731
                            randomization=args.randomization)
    # ---- correlation of phi with the dense reward ----------------------------------------------
    for kind in ("expert", "random"):
        env = make()
        phis = {g: [] for g in GROUNDINGS}
        dense, rng = [], np.random.default_rng(0)
        for i in range(args.episodes):
            obs, _ = env.reset(seed=episode_seed(TRAIN_BASE_SEED, i))
            expert = make_expert(env)
            done = False
            while not done:
                action = expert.act(obs) if kind == "expert" else rng.uniform(-1, 1, 4)
                obs, r, terminated, truncated, _ = env.step(action)
                state = env.unwrapped.privileged_state()
                for g in GROUNDINGS:
                    phis[g].append(rewards[g].potential(state))
                dense.append(r)
                done = terminated or truncated
        env.close()
        for g in GROUNDINGS:
            p = np.asarray(phis[g])
            corr = float(np.corrcoef(p, dense)[0, 1]) if p.std() > 0 else float("nan")
            print(f"corr(phi, dense) {kind:6s} grounding={g:11s} pearson={corr:+.3f} "
                  f"phi mean={p.mean():.3f} ({len(p)} steps, {args.episodes} episodes)")
    # ---- step-time overhead -----------------------------------------------------------------
    for mode in ("dense", "language"):
        env = LanguageRewardWrapper(make(), mode=mode, reward=rewards["roles"])
        env.reset(seed=0)
        for _ in range(5):  # warm caches
            env.step(np.zeros(4, np.float32))
        rng = np.random.default_rng(1)
        n, t0 = 0, time.perf_counter()
        for i in range(args.timing_episodes):
            env.reset(seed=episode_seed(TRAIN_BASE_SEED, 100 + i))
            done = False
            while not done:
                _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 4))
                n += 1
                done = terminated or truncated
        wall = time.perf_counter() - t0
        print(f"step time mode={mode:8s}: {1000 * wall / n:.2f} ms/step over {n} steps "
              f"(includes resets; language encodes each new instruction's sentences once)")
        env.close()
    reward = rewards["roles"]
    env = make()
    env.reset(seed=0)
    state = env.unwrapped.privileged_state()
    reward.potential(state)
    t0 = time.perf_counter()
    for _ in range(200):
        reward.potential(env.unwrapped.privileged_state())
    print(f"potential() incl. privileged_state(): {(time.perf_counter() - t0) / 200 * 1000:.3f} "
          "ms/call (cached embeddings)")
    env.close()


def evaluate(policy_dir: Path, args: argparse.Namespace) -> tuple[float, float, float]:
    from vla_sim.agents.policies import load_policy
    from vla_sim.evaluation.stats import wilson_interval
    from vla_sim.evaluation.success import success_rate

    n = args.eval_seeds * args.eval_repeats
    policy = load_policy(policy_dir)
    rate = success_rate(policy, args.env, n, {"robot": "panda", "randomization": args.randomization,
                                              "image_size": policy.config.image_size,
                                              "cameras": tuple(policy.config.cameras)})
    lo, hi = wilson_interval(int(round(rate * n)), n)
    return rate, lo, hi


def rl_part(args: argparse.Namespace) -> None:
    from vla_sim.agents.training.ppo import PPOConfig, train_ppo
    from vla_sim.agents.training.reinforce import ReinforceConfig, train_reinforce
    from vla_sim.agents.training.rlpd import RLPDConfig, train_rlpd

    n_eval = args.eval_seeds * args.eval_repeats
    out = Path(args.out)
    extra = parse_overrides(args.overrides)  # a typo fails before any evaluation
    if "rlpd" in args.algos and not (args.demos or extra.get("demos")):
        raise SystemExit("--algos rlpd needs --demos DATASET (the BC dataset)")
    if not args.skip_bc_eval:
        rate, lo, hi = evaluate(Path(args.bc), args)
        print(f"BC                      success {rate:.3f} [{lo:.3f}, {hi:.3f}] ({n_eval} "
              "episodes)", flush=True)
    common = dict(env_id=args.env, randomization=args.randomization, total_env_steps=args.steps,
                  n_envs=args.n_envs, eval_episodes=args.train_eval_episodes,
                  eval_every_env_steps=(max(1, args.steps // 10) if args.train_eval_every is None
                                        else args.train_eval_every), progress=False,
                  num_threads=args.threads, asymmetric_critic=args.asymmetric_critic,
                  freeze_vision=args.freeze_vision)
    common.update({k: v for k, v in extra.items() if k in common})  # key=value wins
    for algo in args.algos:
        for reward in args.rewards:
            run = out / f"{algo}_{reward}"
            t0 = time.perf_counter()
            if algo == "ppo":
                own = {"max_minutes": args.max_minutes, **_fields(PPOConfig, extra)}
                cfg = PPOConfig(reward=reward, **common, **_without(own, common))
                res = train_ppo(cfg, run, init=args.bc)
            elif algo == "rlpd":
                own = {"max_minutes": args.max_minutes, "demos": args.demos or "",
                       **_fields(RLPDConfig, extra)}
                cfg = RLPDConfig(reward=reward, **common, **_without(own, common))
                res = train_rlpd(cfg, run, init=args.bc)
            else:
                own = {"vector": args.vector, **_fields(ReinforceConfig, extra)}
                cfg = ReinforceConfig(reward=reward, **common, **_without(own, common))
                res = train_reinforce(cfg, run, init=args.bc)
            wall = time.perf_counter() - t0
            rate_l, lo_l, hi_l = evaluate(run / "last", args)
            line = (f"BC+{algo:9s} {reward:8s} {res.steps} env steps, {wall:7.1f} s train+eval "
                    f" last {rate_l:.3f} [{lo_l:.3f}, {hi_l:.3f}]")
            if args.eval_best:
                rate_b, lo_b, hi_b = evaluate(run / "best", args)
                line += f"  best {rate_b:.3f} [{lo_b:.3f}, {hi_b:.3f}]"
            print(line + f"  in-training evals {res.eval_history}", flush=True)
            print(f"    {format_throughput(f'{algo} {reward}', res.summary)}; curves: "
                  f"{run / 'curves.png'}", flush=True)


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``key=value`` pairs (values parsed as YAML scalars) for the PPO/REINFORCE/RLPD configs."""
    import dataclasses

    import yaml

    from vla_sim.agents.training.configs import PPOConfig, ReinforceConfig, RLPDConfig

    known = {f.name for c in (PPOConfig, ReinforceConfig, RLPDConfig)
             for f in dataclasses.fields(c)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise SystemExit(f"bad override {item!r}: expected key=value with a PPOConfig, "
                             f"ReinforceConfig or RLPDConfig field")
        out[key] = _scalar(value, yaml)
    return out


def _scalar(text: str, yaml) -> object:
    """int, then float (YAML 1.1 reads ``5e-5`` as a string), then any YAML scalar."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def _without(values: dict[str, object], taken: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in values.items() if k not in taken}


def _fields(cls, values: dict[str, object]) -> dict[str, object]:
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("reward", "rl", "all"), default="all")
    parser.add_argument("--env", default="vla_sim/PickPlace-v0")
    parser.add_argument("--randomization", default="medium")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=5, help="trajectories per kind (part 1)")
    parser.add_argument("--timing-episodes", type=int, default=3)
    parser.add_argument("--bc", default=None, help="BC checkpoint folder (part 2)")
    parser.add_argument("--out", default="runs/rl_benchmark")
    parser.add_argument("--steps", type=int, default=20_000, help="env-step budget per run")
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--algos", nargs="+", default=["ppo", "reinforce"],
                        choices=("ppo", "reinforce", "rlpd"))
    parser.add_argument("--demos", default=None,
                        help="RLPD's demonstrations: the BC checkpoint's dataset folder")
    parser.add_argument("--rewards", nargs="+", default=["sparse", "dense", "language"],
                        choices=REWARD_MODES)
    parser.add_argument("--eval-seeds", type=int, default=20)
    parser.add_argument("--eval-repeats", type=int, default=5)
    parser.add_argument("--train-eval-episodes", type=int, default=10)
    parser.add_argument("--train-eval-every", type=int, default=None,
                        help="env steps between in-training success checks (the points of "
                             "curves.png); default a tenth of --steps; 0 = start and end only")
    parser.add_argument("--asymmetric-critic", action=argparse.BooleanOptionalAction,
                        default=True, help="critic reads the env's privileged state "
                                           "(--no-asymmetric-critic: the actor's features)")
    parser.add_argument("--freeze-vision", action=argparse.BooleanOptionalAction, default=False,
                        help="camera encoders fixed at their BC weights, run without autograd")
    parser.add_argument("--vector", choices=("sync", "async"), default="async",
                        help="REINFORCE's vector env (async: a process per env)")
    parser.add_argument("--eval-best", action="store_true",
                        help="also evaluate best/ (chosen by the in-training evaluations)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-minutes", type=float, default=0.0,
                        help="PPO/RLPD wall-clock budget per run (0 = the step budget alone)")
    parser.add_argument("--skip-bc-eval", action="store_true",
                        help="do not re-evaluate the BC checkpoint first")
    parser.add_argument("overrides", nargs="*",
                        help="key=value for PPOConfig/ReinforceConfig/RLPDConfig (each gets "
                             "its own)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part in ("reward", "all"):
        reward_part(args)
    if args.part in ("rl", "all"):
        if args.bc is None:
            print("part rl skipped: pass --bc CHECKPOINT (a `vla-sim train bc` best/ folder)")
        else:
            rl_part(args)


if __name__ == "__main__":
    main()
