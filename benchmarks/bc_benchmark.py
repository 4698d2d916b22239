"""BC benchmark: collect N expert episodes, train BC, report speed and in-sim success.

    python benchmarks/bc_benchmark.py --env PickPlace --episodes 100 --steps 3000 \
        --eval-episodes 100 --work /tmp/bc_bench

Prints collection and training wall-clock, training samples/s, and success rates over
``--eval-episodes`` fresh episodes (seeds from EVAL_BASE_SEED, never seen in training) with
train-split and heldout-split instructions, each with a 95% Wilson interval. The dataset is
reused if ``--work`` already holds it (collection resumes); the training run is fresh each time.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", default="PickPlace")
    ap.add_argument("--robot", default="panda")
    ap.add_argument("--randomization", default="low")
    ap.add_argument("--episodes", type=int, default=100, help="expert demonstrations")
    ap.add_argument("--steps", type=int, default=3000, help="BC gradient steps")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training")
    ap.add_argument("--head", default="gaussian", choices=["gaussian", "discrete"])
    ap.add_argument("--eval-episodes", type=int, default=100)
    ap.add_argument("--collect-workers", type=int, default=1)
    ap.add_argument("--noise", type=float, default=0.3,
                    help="DART noise std on executed expert actions (labels stay clean)")
    ap.add_argument("--cameras", default="front",
                    help="comma-separated cameras for collection, policy and evaluation "
                         "(front | front,wrist)")
    ap.add_argument("--work", default="/tmp/vla_sim_bc_benchmark")
    ap.add_argument("overrides", nargs="*", help="extra BCConfig overrides key=value")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)  # also for evaluation rollouts (shared CPUs thrash)

    from vla_sim.agents.training.bc import BCConfig, train_bc
    from vla_sim.data.demos import DemoArrays
    from vla_sim.evaluation.success import success_rate
    from vla_sim.config import load_config
    from vla_sim.data.collect import CollectConfig, collect
    from vla_sim.data.torch_dataset import VLADataset
    from vla_sim.evaluation.stats import wilson_interval

    cameras = tuple(c.strip() for c in args.cameras.split(",") if c.strip())
    cam_tag = "" if cameras == ("front",) else "_" + "+".join(cameras)
    work = Path(args.work)
    level_tag = "" if args.randomization == "low" else f"_{args.randomization}"
    data_dir = work / f"data_{args.env}_{args.episodes}_n{args.noise}{cam_tag}{level_tag}"
    run_dir = work / "run"
    t0 = time.perf_counter()
    result = collect(CollectConfig(out=str(data_dir), env=args.env, robot=args.robot,
                                   episodes=args.episodes, randomization=args.randomization,
                                   workers=args.collect_workers, image_size=64, progress=False,
                                   noise=args.noise, cameras=cameras))
    collect_s = time.perf_counter() - t0
    print(f"collect: {result.episodes} episodes ({result.successes} successful, expert success "
          f"{result.success_rate:.2f}) in {collect_s:.1f} s")

    t0 = time.perf_counter()
    data = DemoArrays.from_dataset(VLADataset(data_dir))
    load_s = time.perf_counter() - t0
    print(f"dataset: {len(data.states)} steps, {len(data.instructions)} instructions, "
          f"loaded in {load_s:.1f} s")

    cfg = load_config(BCConfig, overrides=[
        f"steps={args.steps}", f"batch_size={args.batch_size}", f"num_threads={args.threads}",
        f"policy.head={args.head}", f"policy.cameras=[{','.join(cameras)}]",
        "checkpoint_every_grad_steps=1000000", "progress=false",
        *args.overrides])
    if run_dir.exists():
        shutil.rmtree(run_dir)
    train = train_bc(data, run_dir, cfg)
    print(f"train: {train.steps} steps x {cfg.batch_size} in {train.wall_s:.1f} s = "
          f"{train.samples_per_s:.0f} samples/s; loss {sum(train.train_losses[:20]) / 20:.4f} -> "
          f"{sum(train.train_losses[-20:]) / 20:.4f}; val loss {train.val_loss}")

    from vla_sim.agents.policies import load_policy
    from vla_sim.data.collect import resolve_env_id

    policy = load_policy(run_dir / "last")
    env_kwargs = {"robot": args.robot, "randomization": args.randomization, "image_size": 64,
                  "cameras": cameras}
    for split in ("train", "heldout"):
        t0 = time.perf_counter()
        rate = success_rate(policy, resolve_env_id(args.env), args.eval_episodes,
                            {**env_kwargs, "instruction_split": split})
        k = round(rate * args.eval_episodes)
        lo, hi = wilson_interval(k, args.eval_episodes)
        print(f"eval[{split}]: success {rate:.2f} ({k}/{args.eval_episodes}, 95% CI "
              f"{lo:.2f}-{hi:.2f}) in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
