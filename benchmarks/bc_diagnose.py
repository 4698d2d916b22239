"""Where a policy's PickPlace / Reach / Push episodes fail: the furthest phase each reached.

    python benchmarks/bc_diagnose.py --policy RUN/last --env PickPlace --episodes 30
    python benchmarks/bc_diagnose.py --policy RUN/last --env Push --episodes 50 --sample-actions

Phases (PickPlace): ``approached`` (gripper within 2 cm in xy of the instructed object, at most
6 cm above it), ``grasped`` (holding it), ``lifted`` (held 4 cm above the table), ``over_goal``
(held within the destination's xy footprint), ``success``. Also counts episodes whose closest
approach was to a *different* object (a grounding error), how many of those went to an object of
the target's colour, and the success rate on scenes with and without such a same-colour
distractor (where only the shape word picks the target). Reach: the same counts. Push: how
each failure ended (``under_way``: the object still moving toward the zone at the time limit;
``overshot``: it passed within the tolerance band's reach and left; ``untouched``;
``stalled``), how far short it stopped, and, on every step, the expert's
label for the visited state beside the policy's action (their cosine and sizes, split by whether
the expert is pushing or repositioning there), so a slow learner and a wrong one read apart.
Uses privileged simulator state, never shown to the policy.
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
    ap.add_argument("--sample-actions", action="store_true",
                    help="act with a sample of the policy's distribution (seeded per episode)")
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
    if list(env.unwrapped.task_names) == ["push"]:
        return diagnose_push(env, policy, args)
    phases, wrong, wrong_twin = Counter(), 0, 0
    by_twin = {True: [0, 0], False: [0, 0]}  # scene has a same-colour distractor: [ok, n]
    for i in range(args.episodes):
        obs, info = env.reset(seed=episode_seed(EVAL_BASE_SEED, i))
        policy.reset()  # a chunking policy drops the last episode's plan
        task = env.unwrapped.task
        twin = has_same_color_distractor(env.unwrapped.instance)
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
        by_twin[twin][0] += bool(info.get("is_success"))
        by_twin[twin][1] += 1
        order = ["approached", "grasped", "lifted", "over_goal", "success"]
        furthest = max([order.index(p) for p in reached], default=-1)
        phases[order[furthest] if furthest >= 0 else "none"] += 1
        # Spending most steps nearest (in xy) to another object = a grounding error.
        most = nearest.most_common(1)[0][0] if nearest else target
        if most != target and not info.get("is_success"):
            wrong += 1
            wrong_twin += same_color(most, target)
    print(f"furthest phase over {args.episodes} episodes: {dict(phases)}")
    print(f"failed episodes spent mostly nearest a different object: {wrong} "
          f"({wrong_twin} of them one of the target's colour)")
    for flag, label in ((True, "with"), (False, "without")):
        ok, n = by_twin[flag]
        print(f"scenes {label} a distractor of the target's colour: {n}, success "
              f"{ok / max(1, n):.0%} ({ok}/{n})")
    return 0


def same_color(a: str, b: str) -> bool:
    """Two object names (``<colour>_<shape>``) of one colour."""
    return a.rsplit("_", 1)[0] == b.rsplit("_", 1)[0]


def has_same_color_distractor(instance) -> bool:
    """The scene holds a movable object of the target's colour and another shape: only the
    shape word tells them apart."""
    target = instance.roles["object"]
    return any(o.movable and o.name != target and same_color(o.name, target)
               for o in instance.objects)


def diagnose_push(env, policy, args) -> int:
    """Push failures by how they ended, and the policy's actions against the expert's labels."""
    from vla_sim.agents.experts import make_expert
    from vla_sim.envs.tasks.push import TOLERANCE
    from vla_sim.utils.seeding import EVAL_BASE_SEED, episode_seed

    expert = make_expert(env)
    endings, short = Counter(), []
    per_phase = {"push": [], "reposition": []}  # (cosine, |policy xyz|, |expert xyz|)
    successes = 0
    for i in range(args.episodes):
        seed = episode_seed(EVAL_BASE_SEED, i)
        obs, info = env.reset(seed=seed)
        policy.reset(seed if args.sample_actions else None)
        task = env.unwrapped.task
        s = task.privileged_state()
        name, zone_name = s["roles"]["object"], s["roles"]["destination"]
        start = np.asarray(s["objects"][name]["position"][:2])
        zone = np.asarray(s["objects"][zone_name]["position"][:2])
        dists, others_moved, done = [], False, False
        others0 = {n: np.asarray(o["position"][:2]) for n, o in s["objects"].items()
                   if n not in (name, zone_name)}
        while not done:
            label = expert.act(obs)
            action = policy.act(obs, deterministic=not args.sample_actions)
            a, e = action[:3], label[:3]
            cos = float(a @ e / (np.linalg.norm(a) * np.linalg.norm(e) + 1e-8))
            per_phase["push" if pushing(s) else "reposition"].append(
                (cos, float(np.linalg.norm(a)), float(np.linalg.norm(e))))
            obs, _, term, trunc, info = env.step(action)
            done = term or trunc
            s = task.privileged_state()
            obj = np.asarray(s["objects"][name]["position"][:2])
            dists.append(float(np.linalg.norm(obj - zone)))
            others_moved |= any(np.linalg.norm(np.asarray(s["objects"][n]["position"][:2]) - p)
                                > 0.02 for n, p in others0.items())
        if info.get("is_success"):
            successes += 1
            continue
        endings[push_ending(dists, float(np.linalg.norm(obj - start)), TOLERANCE)] += 1
        endings["also moved another object"] += int(others_moved)
        short.append(dists[-1] - TOLERANCE)
    n = args.episodes
    print(f"push: {successes}/{n} successful; failures by ending: {dict(endings)}")
    if short:
        print(f"failures stopped {np.median(short) * 100:.1f} cm (median) outside the tolerance "
              f"(range {min(short) * 100:.1f}-{max(short) * 100:.1f} cm)")
    for phase, rows in per_phase.items():
        if rows:
            r = np.asarray(rows)
            print(f"{phase:>10} steps: {len(r)}; cosine(policy, expert) median "
                  f"{np.median(r[:, 0]):.2f}; |policy xyz| mean {r[:, 1].mean():.2f} vs expert {r[:, 2].mean():.2f}; "
                  f"policy near zero (|a| < 0.15) on {np.mean(r[:, 1] < 0.15):.0%}")
    return 0


def push_ending(dists: list[float], moved: float, tolerance: float) -> str:
    """How a failed push ended, from the object's distance to the zone after every step, how far
    the object moved in all and the task's success distance ``tolerance``: ``untouched``
    (moved < 1 cm), ``overshot`` (came within 2 cm of the tolerance and left by 2 cm more),
    ``under_way`` (still closing in over the last 10 steps, by at least 5 mm), else
    ``stalled``."""
    if moved < 0.01:
        return "untouched"
    if min(dists) < tolerance + 0.02 and dists[-1] > min(dists) + 0.02:
        return "overshot"
    if len(dists) > 10 and dists[-1] < dists[-11] - 0.005:
        return "under_way"
    return "stalled"


def pushing(s: dict) -> bool:
    """Whether the push expert is pushing at this privileged state (end effector low, behind the
    object on the object->zone line), rather than repositioning or approaching."""
    ee = np.asarray(s["ee_position"])
    obj = np.asarray(s["objects"][s["roles"]["object"]]["position"])
    zone = np.asarray(s["objects"][s["roles"]["destination"]]["position"])
    d = zone[:2] - obj[:2]
    u = d / max(float(np.linalg.norm(d)), 1e-6)
    rel = ee[:2] - obj[:2]
    along, lateral = float(rel @ u), float(rel[0] * u[1] - rel[1] * u[0])
    return abs(lateral) < 0.02 and along < -0.02 and ee[2] < 0.045


if __name__ == "__main__":
    raise SystemExit(main())
