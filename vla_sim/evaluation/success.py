"""The in-training success check: the evaluator's episode loop on evaluation seeds, in-process.

Trainers (BC, DAgger, curriculum, PPO, REINFORCE, continual, multi-task) call this one function,
so an in-training figure and a reported one count success the same way on the same seeds.
Reported figures come from :func:`vla_sim.evaluation.evaluate` (cells, workers, videos).
"""

from __future__ import annotations

import sys
from typing import Any

import gymnasium as gym

from vla_sim.evaluation.evaluator import run_episode
from vla_sim.utils.seeding import EVAL_BASE_SEED, episode_seed


def success_rate(policy: Any, env_id: str, episodes: int,
                 env_kwargs: dict[str, Any] | None = None,
                 base_seed: int = EVAL_BASE_SEED) -> float:
    """Fraction of the seeded episodes ``episode_seed(base_seed, 0..episodes-1)`` that
    ``policy.act(obs, deterministic=True)`` completes. ``env_kwargs`` go to ``gym.make``
    (image size, cameras, robot, randomization level or config, split). A torch module is
    put in eval mode for the check and restored after it."""
    import vla_sim  # noqa: F401  (registers the env ids)

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = gym.make(env_id, **(env_kwargs or {}))
    was_training = bool(getattr(policy, "training", False))
    if was_training:
        policy.eval()
    # One observation at a time gains nothing from intra-op threads, and on a busy shared CPU
    # two threads made act() 5x slower (52 vs 10 ms measured), so roll out single-threaded.
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        wins = sum(bool(run_episode(env, policy, episode_seed(base_seed, i))[0]["success"])
                   for i in range(episodes))
    finally:
        if torch is not None:
            torch.set_num_threads(threads)
        if was_training:
            policy.train(True)
        env.close()
    return wins / episodes
