"""``vla-sim dataset info DIR``: summarise and validate a demonstration dataset."""

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
    print("valid     yes" + (" (videos decoded)" if args.decode else ""))
    return 0
