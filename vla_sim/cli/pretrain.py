"""``vla-sim pretrain vl`` and ``vla-sim pretrain action``: pre-training before BC.

    vla-sim pretrain vl --data DATA [DATA ...] --out DIR [--config vl.yaml] [key=value ...]
    vla-sim pretrain action --data DATA [DATA ...] --out DIR [--config ae.yaml] [key=value ...]

``vl``: CLIP-style contrastive pre-training of the policy's vision encoder on (frame, text)
pairs (VLPretrainConfig keys, e.g. ``steps=2000 text=both policy.image_size=64``); writes
``vl_model.safetensors``, ``vl_config.json`` and ``metrics.json`` (retrieval accuracy before/after).
Use the result with ``vla-sim train bc ... --init-vision DIR``.
Both run data-parallel under ``torchrun --nproc_per_node N -m vla_sim.cli.main pretrain ...``
(rank 0 writes; ``batch_size`` is the global batch).

``action``: action-chunk autoencoder (ActionAEConfig keys, e.g. ``chunk=4 latent_dim=4``); writes
``action_ae.safetensors``, ``action_ae.json`` and ``metrics.json`` (reconstruction MSE). Train a
policy on its latents with ``vla-sim train latent --action-ae DIR``.
"""

from __future__ import annotations

import argparse
import json

from vla_sim.cli.common import open_training_dataset
from vla_sim.config import add_config_arguments, config_from_args


def add_parser(subparsers) -> None:
    from vla_sim.agents.policies.config import ActionAEConfig
    from vla_sim.agents.training.configs import VLPretrainConfig

    parser = subparsers.add_parser("pretrain", help="pre-train encoders (vl, action)",
                                   description="Pre-training before behaviour cloning.")
    sub = parser.add_subparsers(dest="pretrainer", required=True, metavar="KIND")
    vl = sub.add_parser("vl", help="contrastive vision-language pre-training of the vision encoder")
    ae = sub.add_parser("action", help="action-chunk autoencoder")
    for p, cls in ((vl, VLPretrainConfig), (ae, ActionAEConfig)):
        p.add_argument("--data", required=True, nargs="+", help="dataset folder(s) (vla-sim collect)")
        p.add_argument("--out", required=True, help="output folder")
        p.add_argument("--max-episodes", type=int, default=None,
                       help="use only the first N episodes of each dataset")
        add_config_arguments(p, cls)
    vl.set_defaults(func=run_vl)
    ae.set_defaults(func=run_action)


def _datasets(args: argparse.Namespace, dist) -> list:
    # Rank 0 first: it builds the frame caches the others then only verify.
    return dist.main_first(lambda: [open_training_dataset(root, args.max_episodes)
                                    for root in args.data])


def run_vl(args: argparse.Namespace) -> int:
    from vla_sim.agents.training import distributed
    from vla_sim.agents.training.pretrain_vl import VLPretrainConfig

    cfg = config_from_args(VLPretrainConfig, args)
    with distributed.session(cfg.device) as dist:
        return _run_vl(args, cfg, dist)


def _run_vl(args: argparse.Namespace, cfg, dist) -> int:
    from pathlib import Path

    from vla_sim.agents.training.pretrain_vl import pairs_from_datasets, pretrain_vl, save_vl
    from vla_sim.data.text_cache import CachedTextEncoder
    from vla_sim.utils.io import atomic_write_json

    pairs = pairs_from_datasets(_datasets(args, dist), cfg)
    every = max(1, cfg.steps // 10)

    def log(step: int, loss: float) -> None:
        if step % every == 0 or step == cfg.steps:
            print(f"vl step {step}/{cfg.steps}: InfoNCE {loss:.4f}")

    # Text features from the datasets' caches (added to the first one's when missing).
    encoder = CachedTextEncoder(args.data, cfg.policy.text_encoder, hint=" and ".join(
        f"vla-sim dataset cache-text {d} --text-encoder {cfg.policy.text_encoder}"
        for d in args.data))
    res = pretrain_vl(pairs, cfg, encoder=encoder, log=log)
    if not dist.is_main:
        return 0
    metrics = {"retrieval_before": res.retrieval_before, "retrieval_after": res.retrieval_after,
               "chance": res.chance, "retrieval_train": res.retrieval_train,
               "chance_train": res.chance_train, "k": cfg.retrieval_k, "num_texts": res.num_texts,
               "num_frames": int(len(pairs.images)), "final_loss": res.losses[-1],
               "temperature": res.temperature, "data": [str(Path(d).resolve()) for d in args.data]}
    save_vl(res.model, cfg, args.out, meta=metrics)
    atomic_write_json(Path(args.out) / "metrics.json", metrics)
    print(f"vl: {len(pairs.images)} frames, {res.num_texts} texts ({cfg.text}); zero-shot "
          f"retrieval (1 of {cfg.retrieval_k}) on held-out episodes {res.retrieval_before:.3f} -> "
          f"{res.retrieval_after:.3f} (chance {res.chance:.3f}); on training episodes "
          f"{res.retrieval_train:.3f} (chance {res.chance_train:.3f}); temperature {res.temperature:.4f}; "
          f"saved to {args.out}")
    return 0


def run_action(args: argparse.Namespace) -> int:
    from vla_sim.agents.policies.latent import ActionAEConfig
    from vla_sim.agents.training import distributed

    cfg = config_from_args(ActionAEConfig, args)
    with distributed.session("cpu") as dist:
        return _run_action(args, cfg, dist)


def _run_action(args: argparse.Namespace, cfg, dist) -> int:
    from pathlib import Path

    import numpy as np

    from vla_sim.agents.policies.latent import save_action_ae
    from vla_sim.agents.training.pretrain_action import train_action_ae
    from vla_sim.data.demos import DemoArrays, concat_demos
    from vla_sim.utils.io import atomic_write_json

    demos, _ = concat_demos([DemoArrays.from_dataset(d) for d in _datasets(args, dist)])
    res = train_action_ae(demos.actions, demos.episode_index, cfg)
    if not dist.is_main:
        return 0
    metrics = {"train_mse": res.train_mse, "val_mse": res.val_mse, "mean_chunk_mse": res.baseline_mse,
               "final_loss": res.losses[-1], "num_steps_data": int(len(demos.actions)),
               "num_episodes": int(len(np.unique(demos.episode_index)))}
    save_action_ae(res.model, args.out, meta=metrics)
    atomic_write_json(Path(args.out) / "metrics.json", metrics)
    val = "n/a" if res.val_mse is None else f"{res.val_mse:.5f}"
    print(f"action AE (chunk {cfg.chunk}, latent {cfg.latent_dim}): reconstruction MSE train "
          f"{res.train_mse:.5f}, held-out {val} (predicting the mean chunk: {res.baseline_mse:.5f}); "
          f"saved to {args.out}")
    print(json.dumps(metrics))
    return 0
