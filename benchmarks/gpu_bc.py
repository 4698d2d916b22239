"""BC training throughput (samples/s) on whatever device is present: CUDA if available, else CPU.

    python benchmarks/gpu_bc.py                                  # recipe policy, synthetic data
    python benchmarks/gpu_bc.py --batch-size 256 --precision bf16    # on a GPU
    python benchmarks/gpu_bc.py --data DATASET_DIR               # a real dataset's frames
    python benchmarks/gpu_bc.py --device cpu --threads 2 --steps 10

The policy is the PickPlace recipe's (README: front + wrist cameras at 64 px, token attention,
``policy.spatial_lang``, grounding and goal-state heads; ``ground_weight=1``, ``aux_weight=1``),
trained by BC's own sampler and loss (``agents/training/bc.py``). Two figures, after
``--warmup`` untimed steps:

* ``update``: forward + backward + AdamW step on batches already on the device (what the model
  costs);
* ``bc step``: the whole step of ``vla-sim train bc``: draw the batch from the in-memory dataset,
  index, augment, build the labels, move it to the device, then the update (the
  ``SupervisedLoop`` that training runs).

Synthetic data (default) has the recipe's shapes: ``--frames`` random frames per camera, random
states, actions and image-plane labels, hashed-word instruction features of MiniLM's size. With
``--data`` the frames and labels come from a dataset (its text features from its feature cache,
``vla-sim dataset cache-text``, or the encoder). Prints the device, torch version, date, batch
size and both figures; ``--json PATH`` also writes them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

RECIPE_POLICY = {"cameras": ["front", "wrist"], "image_size": 64, "spatial_lang": True}
"""The recipe's policy settings beyond VLAPolicyConfig's defaults (BC sets grounding and
aux_dim from ground_weight and aux_weight)."""
RECIPE_BC = {"ground_weight": 1.0, "aux_weight": 1.0}


def synthetic_demos(frames: int, cfg, seed: int = 0):
    """Random data with the policy's shapes and valid grounding labels."""
    from vla_sim.data.demos import DemoArrays
    from vla_sim.envs.goal_state import GOAL_STATE_DIM, GOAL_STATE_LAYOUT, PROJECTED_CAMERAS

    rng = np.random.default_rng(seed)
    s = cfg.image_size
    goal = rng.uniform(-1, 1, (frames, GOAL_STATE_DIM)).astype(np.float32)
    for cam in PROJECTED_CAMERAS:
        goal[:, GOAL_STATE_LAYOUT[f"{cam}_visible"]] = rng.random((frames, 2)) < 0.8
    goal[:, GOAL_STATE_LAYOUT["holding"]] = rng.random((frames, 1)) < 0.5
    words = ["red", "blue", "green", "yellow", "cube", "sphere", "tray", "bowl"]
    instructions = [f"put the {words[i % 4]} {words[4 + i % 2]} in the {words[(i + 1) % 4]} "
                    f"{words[6 + i % 2]}" for i in range(frames // 50 + 1)]
    data = DemoArrays.from_steps(
        {key: rng.integers(0, 256, (frames, s, s, 3), dtype=np.uint8) for key in cfg.image_keys},
        rng.standard_normal((frames, cfg.state_dim)), rng.uniform(-1, 1, (frames, 4)),
        [instructions[i // 50] for i in range(frames)], np.arange(frames) // 50)
    data.env_states = goal
    return data


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {model}, {torch.get_num_threads()} torch threads"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda[:i]")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50, help="timed steps per figure")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps before each figure")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="bf16: the loss under bf16 autocast (CUDA only)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--frames", type=int, default=4096, help="synthetic frames per camera")
    ap.add_argument("--data", default=None, help="a dataset folder instead of synthetic data")
    ap.add_argument("--skip-pipeline", action="store_true", help="only the update figure")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("overrides", nargs="*",
                    help="BCConfig overrides key=value (policy.channels=[32,64,128], ...)")
    args = ap.parse_args(argv)

    import torch

    from vla_sim.agents.policies.vla import VLAPolicy
    from vla_sim.agents.training.bc import (
        _Batches,
        batch_sampler,
        instruction_features,
        loss_function,
    )
    from vla_sim.agents.training.common import resolve_device
    from vla_sim.agents.training.configs import BCConfig
    from vla_sim.agents.training.loop import SupervisedLoop, adamw, decay_groups
    from vla_sim.config import load_config
    from vla_sim.envs.goal_state import GOAL_XYZ_DIM

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.precision == "bf16" and device.type != "cuda":
        ap.error("--precision bf16 needs a CUDA device (on the CPU bf16 autocast measured no "
                 "faster and stalled learning)")
    overrides = [f"{k}={v}" for k, v in RECIPE_BC.items()] + [
        f"policy.{k}={json.dumps(v) if isinstance(v, (list, bool)) else v}"
        for k, v in RECIPE_POLICY.items()]
    cfg = load_config(BCConfig, overrides=overrides + [
        f"batch_size={args.batch_size}", f"precision={args.precision}", f"device={device}",
        *args.overrides])
    pcfg = cfg.policy
    pcfg.grounding = cfg.ground_weight > 0

    if args.data:
        from vla_sim.data.demos import DemoArrays
        from vla_sim.data.text_cache import CachedTextEncoder
        from vla_sim.data.torch_dataset import VLADataset

        data = DemoArrays.from_dataset(VLADataset(args.data))
        encoder = CachedTextEncoder([args.data], pcfg.text_encoder)
        source = f"dataset {args.data} ({len(data.states)} frames)"
    else:
        from vla_sim.language.encoder import HashingTextEncoder

        data = synthetic_demos(args.frames, pcfg)
        encoder = HashingTextEncoder(pcfg.text_dim)
        source = f"synthetic ({args.frames} frames)"
    if cfg.aux_weight > 0 and pcfg.aux_dim == 0:  # as train_bc sets it: the positions
        pcfg.aux_dim = min(data.env_states.shape[1], GOAL_XYZ_DIM)
    data.check_fits(pcfg)
    text = instruction_features(encoder, list(data.instructions), pcfg)

    torch.manual_seed(0)
    policy = VLAPolicy(pcfg)
    policy.set_normalization(data.states.mean(0), data.states.std(0), data.actions.mean(0),
                             data.actions.std(0))
    if policy.aux_head is not None:
        targets = data.env_states[:, :pcfg.aux_dim]
        policy.set_aux_normalization(targets.mean(0), targets.std(0))
    policy.to(device).train()
    batches = _Batches(data, text, pcfg, device)
    train_ids = np.arange(len(data.states))
    sample = batch_sampler(batches, train_ids, cfg)
    loss = loss_function(policy, cfg, device)
    optimizer = adamw(decay_groups(policy, cfg.weight_decay), lr=cfg.lr)
    params = [p for p in policy.parameters() if p.requires_grad]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # update: batches made beforehand, already on the device
    ready = [sample(np.random.default_rng([0, i])) for i in range(min(args.steps, 8))]

    def update(batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss(batch).backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()

    for i in range(args.warmup):
        update(ready[i % len(ready)])
    sync()
    t0 = time.perf_counter()
    for i in range(args.steps):
        update(ready[i % len(ready)])
    sync()
    update_s = time.perf_counter() - t0
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": device_name(device), "torch": torch.__version__,
        "python": platform.python_version(), "batch_size": cfg.batch_size,
        "precision": cfg.precision, "data": source, "steps": args.steps,
        "parameters": sum(p.numel() for p in params),
        "update_samples_per_s": args.steps * cfg.batch_size / update_s,
        "update_ms_per_step": 1000 * update_s / args.steps,
    }
    # bc step: SupervisedLoop with BC's sampler and loss, as `vla-sim train bc` runs it
    if not args.skip_pipeline:
        loop = SupervisedLoop(params, optimizer, sample, loss, seed=1, grad_clip=cfg.grad_clip)
        loop.run(0, args.warmup)
        sync()
        t0 = time.perf_counter()
        loop.run(args.warmup, args.warmup + args.steps)
        sync()
        step_s = time.perf_counter() - t0
        results["bc_step_samples_per_s"] = args.steps * cfg.batch_size / step_s
        results["bc_step_ms_per_step"] = 1000 * step_s / args.steps
        results["data_resident_on_device"] = bool(batches.resident)
    if device.type == "cuda":
        results["max_memory_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20

    print(f"gpu_bc  {results['date']}  |  {results['device']}  |  torch {results['torch']}")
    print(f"  policy: {'+'.join(pcfg.cameras)} {pcfg.image_size} px, channels {pcfg.channels}, "
          f"spatial_lang={pcfg.spatial_lang}, grounding={pcfg.grounding}, aux_dim={pcfg.aux_dim}"
          f" ({results['parameters']:,} parameters); batch {cfg.batch_size}, {cfg.precision}; "
          f"{source}")
    print(f"  update (forward+backward+AdamW, batches on the device): "
          f"{results['update_samples_per_s']:8.1f} samples/s  "
          f"({results['update_ms_per_step']:.1f} ms/step)")
    if "bc_step_samples_per_s" in results:
        print(f"  bc step (sample, augment, labels, transfer, update):   "
              f"{results['bc_step_samples_per_s']:8.1f} samples/s  "
              f"({results['bc_step_ms_per_step']:.1f} ms/step)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
