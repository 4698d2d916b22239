"""Which randomization factor costs a policy its success: evaluate it at a reference level
(``low``), at a harder level (``medium``), and at the harder level with one factor group at a
time set back to the reference's values, all on the same seeds.

A policy trained at ``low`` that loses 40 points at ``medium`` may be failing on what it sees
(textures, lighting, colours, the camera) or on what it must do (poses, physics, distractors);
each row says how much of the gap one group closes. The configs are written as YAML files into
``--out`` (reusable with ``vla-sim eval --randomization FILE.yaml``).

    python benchmarks/randomization_ablation.py --policy RUN/last --env PickPlace --episodes 100
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import yaml

FACTOR_GROUPS: dict[str, tuple[str, ...]] = {
    "textures": ("textures", "texture_prob", "object_textures", "table_color_jitter",
                 "shadow_prob"),
    "lighting": ("lighting", "light_direction_jitter", "light_color_jitter", "ambient_jitter",
                 "diffuse_jitter", "specular_jitter", "shadow_prob"),
    "colours": ("colors", "color_jitter"),
    "camera": ("camera", "camera_eye_jitter", "camera_target_jitter", "fov_jitter"),
    "poses": ("poses", "position_range", "yaw_range"),
    "physics": ("physics", "friction_jitter", "mass_jitter", "restitution_max", "damping_max"),
    "distractors": ("distractors",),
}
"""Factor group -> the RandomizationConfig fields it sets back (shadows count as both texture
and lighting: the group that removes them is the one that may close the gap)."""


def ablation_configs(base: str, reference: str,
                     groups: list[str] | None = None) -> dict[str, dict]:
    """Group name -> the ``base`` level's fields with that group's set to ``reference``'s;
    only groups that differ between the two levels (and, given ``groups``, only those)."""
    from vla_sim.randomization.config import LEVELS

    if base not in LEVELS or reference not in LEVELS:
        raise ValueError(f"--base and --reference must be levels of {list(LEVELS)}")
    unknown = sorted(set(groups or ()) - set(FACTOR_GROUPS))
    if unknown:
        raise ValueError(f"unknown factor group(s) {unknown}; the groups are "
                         f"{list(FACTOR_GROUPS)}")
    hi, lo = dataclasses.asdict(LEVELS[base]), dataclasses.asdict(LEVELS[reference])
    out = {}
    for group, fields in FACTOR_GROUPS.items():
        if groups is not None and group not in groups:
            continue
        if all(hi[f] == lo[f] for f in fields):
            continue
        cfg = dict(hi, name=f"{base}-{group}@{reference}")
        cfg.update({f: lo[f] for f in fields})
        out[group] = cfg
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", required=True, help="checkpoint folder")
    p.add_argument("--env", default="PickPlace")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--split", default="train")
    p.add_argument("--base", default="medium", help="the harder level")
    p.add_argument("--reference", default="low", help="the level the policy does well at")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--sample-actions", action="store_true")
    p.add_argument("--groups", nargs="+", choices=list(FACTOR_GROUPS), default=None,
                   help="only these factor groups (default: every group the levels differ in)")
    p.add_argument("--out", default="runs/randomization_ablation")
    args = p.parse_args(argv)

    from vla_sim.evaluation.stats import wilson_interval

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for group, cfg in ablation_configs(args.base, args.reference, args.groups).items():
        path = out / f"{args.base}_{group}_at_{args.reference}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=True))
        files[group] = str(path)
    levels = [args.reference, args.base, *files.values()]
    # The CLI's own evaluation: it reads the checkpoint's cameras and image size, and writes
    # the usual report (out/eval/report.html) beside this table.
    cmd = [sys.executable, "-m", "vla_sim.cli.main", "eval", "--policy", args.policy,
           "--env", args.env, "--episodes", str(args.episodes), "--split", args.split,
           "--randomization", ",".join(levels), "--record", "none",
           "--workers", str(args.workers), "--out", str(out / "eval")]
    if args.sample_actions:
        cmd.append("--sample-actions")
    subprocess.run(cmd, check=True)
    report = json.loads((out / "eval" / "report.json").read_text())
    rates = {cell["level"]: (cell["successes"], cell["episodes"]) for cell in report["cells"]}
    base_k, n = rates[args.base]
    names = {args.reference: f"{args.reference} (reference)", args.base: f"{args.base}",
             **{f: f"{args.base}, {g} at {args.reference}" for g, f in files.items()}}
    print(f"\n{args.env}, {args.split} instructions, n={n} per row, the same seeds in every row")
    print(f"{'randomization':<40} {'success':>8}  95% CI         vs {args.base}")
    for level in levels:
        k, m = rates[level]
        lo, hi = wilson_interval(k, m)
        gap = "" if level == args.base else f"{100 * (k / m - base_k / n):+.0f} points"
        print(f"{names[level]:<40} {100 * k / m:>7.0f}%  [{100 * lo:.0f}-{100 * hi:.0f}]"
              f"{'':>6}{gap}")


if __name__ == "__main__":
    main()
