"""Where a policy's PickPlace / Reach episodes fail: the furthest phase each episode reached.

    python benchmarks/bc_diagnose.py --policy RUN/last --env PickPlace --episodes 30

Phases (PickPlace): ``approached`` (gripper within 2 cm in xy of the instructed object, at most
6 cm above it), ``grasped`` (holding it), ``lifted`` (held 4 cm above the table), ``over_goal``
(held within the destination's xy footprint), ``success``. Also counts episodes whose closest
approach was to a *different* object (a grounding error). Reach: ``closest`` distance histogram
and wrong-object counts. Uses privileged simulator state, never shown to the policy.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policy", required=True)
    ap.add_argument("--env", default="PickPlace")
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--split", default="train")
    ap.add_argument("--randomization", default="low")
    args = ap.parse_args(argv)
    import gymnasium as gym
    import torch

    import vla_sim  # noqa: F401
    from vla_sim.agents.policies import load_policy
    from vla_sim.envs.registration import resolve_env_id
    from vla_sim.utils.seeding import EVAL_BASE_SEED, episode_seed

    torch.set_num_threads(1)
    policy = load_policy(args.policy)
    cams = tuple(policy.config.cameras)
    env = gym.make(resolve_env_id(args.env), image_size=policy.config.image_size, cameras=cams,
                   randomization=args.randomization, instruction_split=args.split)
    phases, wrong = Counter(), 0
    for i in range(args.episodes):
        obs, info = env.reset(seed=episode_seed(EVAL_BASE_SEED, i))
        task = env.unwrapped.task
        reached, nearest = set(), Counter()
        done = False
        while not done:
            s = task.privileged_state()
            target = s["roles"]["object"]
            ee = np.asarray(s["ee_position"])
            dists = {n: np.linalg.norm(ee[:2] - np.asarray(o["position"][:2]))
                     for n, o in s["objects"].items()}
            nearest[min(dists, key=dists.get)] += 1
            obj = np.asarray(s["objects"][target]["position"])
            if dists[target] < 0.02 and ee[2] - obj[2] < 0.06:
                reached.add("approached")
            if s["holding"] == target:
                reached.add("grasped")
                if obj[2] > 0.04 + s["objects"][target]["half_height"]:
                    reached.add("lifted")
                dest = s["roles"].get("destination")
                if dest and np.linalg.norm(obj[:2] - np.asarray(s["objects"][dest]["position"][:2])) < 0.04:
                    reached.add("over_goal")
            obs, _, term, trunc, info = env.step(policy.act(obs))
            done = term or trunc
        if info.get("is_success"):
            reached.add("success")
        order = ["approached", "grasped", "lifted", "over_goal", "success"]
        furthest = max([order.index(p) for p in reached], default=-1)
        phases[order[furthest] if furthest >= 0 else "none"] += 1
        # Spending most steps nearest (in xy) to another object = a grounding error.
        if nearest and nearest.most_common(1)[0][0] != target and not info.get("is_success"):
            wrong += 1
    print(f"furthest phase over {args.episodes} episodes: {dict(phases)}")
    print(f"failed episodes spent mostly nearest a different object: {wrong}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
