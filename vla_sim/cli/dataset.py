"""``vla-sim dataset info DIR``: summarise and validate a demonstration dataset.
``vla-sim dataset cache-text DIR``: compute the instruction features training needs and keep them
beside the dataset, so training runs where the text encoder is not installed."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("dataset", help="inspect demonstration datasets")
    sub = p.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    info = sub.add_parser("info", help="print episodes, frames, tasks, success and cameras; validate")
    info.add_argument("dir", help="dataset folder")
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.add_argument("--decode", action="store_true",
                      help="also decode every video (builds the frame cache, or checks it against "
                           "its checksums and rebuilds it if stale or modified)")
    p.set_defaults(func=run)
    cache = sub.add_parser(
        "cache-text", help="precompute the instruction features training needs (for machines "
                           "without the text encoder)",
        description="Encode every instruction of the dataset (and, with --instruction-aug, the "
                    "paraphrases BC with the same instruction_aug and seed uses; and each "
                    "episode's scene description, for `pretrain vl text=description`) and keep "
                    "the features in DIR/.cache/text_<encoder>.safetensors. Training reads them "
                    "from there, so it needs neither transformers nor the encoder's weights.")
    cache.add_argument("dir", help="dataset folder")
    cache.add_argument("--text-encoder", default="default",
                       help="the policy's text encoder (policy.text_encoder)")
    cache.add_argument("--instruction-aug", type=int, default=0,
                       help="also the paraphrases of BC's instruction_aug=K (with --seed)")
    cache.add_argument("--seed", type=int, default=0, help="the BC run's seed (paraphrases)")
    cache.add_argument("--batch-size", type=int, default=64, help="strings per encoder batch")
    cache.set_defaults(func=run_cache_text)


def run_cache_text(args: argparse.Namespace) -> int:
    import time

    from vla_sim.agents.training.bc import instruction_alternatives
    from vla_sim.agents.training.pretrain_vl import describe_scene
    from vla_sim.data.demos import DemoArrays
    from vla_sim.data.reader import open_dataset
    from vla_sim.data.text_cache import CachedTextEncoder

    reader = open_dataset(args.dir, validate=True)
    demos = DemoArrays.from_reader(reader)
    strings = list(demos.instructions)
    if args.instruction_aug > 0:
        strings = instruction_alternatives(demos, args.instruction_aug, args.seed)[0]
    descriptions = {describe_scene(reader.episode_record(e)["randomization"])
                    for e in range(reader.num_episodes)}
    strings += sorted(descriptions - set(strings))
    encoder = CachedTextEncoder([args.dir], args.text_encoder, batch_size=args.batch_size)
    t0 = time.perf_counter()
    added = encoder.ensure(strings)
    path = encoder.path()
    size = path.stat().st_size / 1e6 if path.is_file() else 0.0
    print(f"text features ({args.text_encoder}, {encoder.fingerprint}): {len(strings)} strings "
          f"({_count(len(demos.instructions), 'instruction')}, "
          f"{_count(len(descriptions), 'scene description')}"
          + (f", paraphrases of instruction_aug={args.instruction_aug} seed={args.seed}"
             if args.instruction_aug > 0 else "")
          + f"); {added} encoded in {time.perf_counter() - t0:.1f} s, the rest were cached; "
          f"{path} ({size:.1f} MB)")
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def run(args: argparse.Namespace) -> int:
    from vla_sim.data.reader import open_dataset

    # DatasetError (a ValueError) -> clean exit 2, naming the file, column and row at fault
    ds = open_dataset(args.dir, validate=True)
    if args.decode:  # decodes, or checks the frame cache against its checksums
        for cam in ds.cameras:
            ds.frames(cam)
    s = ds.summary()
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    n = s["episodes"]
    print(f"dataset   {s['root']}  (LeRobot {s['codebase_version']}, robot {s['robot_type']})")
    print(f"episodes  {n}    frames {s['frames']}    fps {s['fps']}")
    if s["episode_length"]:
        L = s["episode_length"]
        print(f"length    min {L['min']}  mean {L['mean']:.1f}  max {L['max']} frames")
    print("cameras   " + ", ".join(f"{c} {h}x{w}" for c, (h, w, _) in s["cameras"].items()))
    print(f"success   {s['successful_episodes']}/{n} episodes successful")
    collect = s["vla_sim"].get("collect")
    if collect:
        print("collected " + ", ".join(f"{k}={v}" for k, v in collect.items()))
    print("tasks     " + ", ".join(f"{t} ({c})" for t, c in sorted(s["tasks"].items())))
    print(f"instructions ({len(s['instructions'])}):")
    for text, count in sorted(s["instructions"].items(), key=lambda kv: -kv[1]):
        print(f"  {count:5d}  {text}")
    for cam, status in ds.cache_status.items():
        print(f"frame cache {cam}: {status}")
    from vla_sim.data.text_cache import read_text_cache

    for path in sorted((ds.root / ".cache").glob("text_*.safetensors")):
        entries, problem = read_text_cache(path, path.stem.removeprefix("text_"))
        print(f"text features {path.stem.removeprefix('text_')}: "
              + (f"{len(entries)} strings" if problem is None else f"unusable ({problem})"))
    print("valid     yes" + (" (videos decoded)" if args.decode else ""))
    return 0
