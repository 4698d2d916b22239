"""Training techniques against their baselines, same data, same training seed, same eval seeds.

    python benchmarks/techniques_benchmark.py --small [--only vl,ae,multitask,continual,curriculum]
    python benchmarks/techniques_benchmark.py            # full size (hours on a CPU)

Sections (each prints its technique next to the baseline it should beat):
  vl          zero-shot retrieval (1 of K instructions, held-out episodes) before/after CLIP-style
              pre-training; Reach BC success without vs with the pre-trained vision encoder
              (equal BC steps, same seed).
  ae          action-chunk autoencoder reconstruction MSE (held-out episodes) vs predicting the
              mean chunk; Reach BC success with raw actions vs predicting the AE latent.
  multitask   Reach + Push BC: per-task success with one shared head vs per-task heads.
  continual   a Reach policy fine-tuned on Push without vs with reservoir replay: Reach success
              before/after (forgetting) and Push success after.
  curriculum  Reach BC with a data curriculum none -> low -> medium (advance at the threshold)
              vs training on medium-level data from the start (and on all levels mixed), all
              evaluated at medium.

Success rates are over ``--eval-episodes`` seeded episodes (EVAL_BASE_SEED; never seen in
training) with 95% Wilson intervals; small runs have wide intervals, so read overlapping
intervals as "no measured difference". Datasets are cached in ``--work`` (collection resumes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

SECTIONS = ("vl", "ae", "multitask", "continual", "curriculum")


@dataclasses.dataclass
class Size:
    image_size: int
    episodes: int
    bc_steps: int
    finetune_steps: int
    vl_steps: int
    ae_steps: int
    eval_episodes: int
    curriculum_eval_every: int
    curriculum_eval_episodes: int


SMALL = Size(image_size=32, episodes=30, bc_steps=600, finetune_steps=300, vl_steps=300,
             ae_steps=1000, eval_episodes=20, curriculum_eval_every=100, curriculum_eval_episodes=8)
FULL = Size(image_size=64, episodes=100, bc_steps=3000, finetune_steps=1500, vl_steps=2000,
            ae_steps=3000, eval_episodes=100, curriculum_eval_every=500,
            curriculum_eval_episodes=20)


def policy_config(size: Size):
    from vla_sim.agents.policies import VLAPolicyConfig

    if size.image_size <= 32:
        return VLAPolicyConfig(image_size=size.image_size, channels=[16, 32, 64],
                               image_features=128, trunk_hidden=[128, 128], attn_dim=64)
    return VLAPolicyConfig(image_size=size.image_size)


def bc_config(size: Size, steps: int | None = None, **kw):
    from vla_sim.agents.training.bc import BCConfig

    return BCConfig(steps=steps or size.bc_steps, batch_size=32, warmup_steps=50, val_every_grad_steps=10**6,
                    checkpoint_every_grad_steps=10**6, tensorboard=False, progress=False, num_threads=1,
                    device="cpu", seed=0, policy=policy_config(size), **kw)


class Bench:
    def __init__(self, work: Path, size: Size, level: str = "none"):
        self.work, self.size, self.level = work, size, level
        self.threshold = 0.8
        self.results: dict[str, Any] = {}
        self._demos: dict[tuple[str, str], Any] = {}

    # --- data and evaluation ---------------------------------------------------------------
    def dataset(self, env: str, level: str, episodes: int | None = None, seed: int = 0):
        from vla_sim.data.collect import CollectConfig, collect
        from vla_sim.data.torch_dataset import VLADataset

        n = episodes or self.size.episodes
        out = self.work / f"data_{env}_{level}_{n}_{self.size.image_size}px_s{seed}"
        collect(CollectConfig(out=str(out), env=env, episodes=n, randomization=level, seed=seed,
                              image_size=self.size.image_size, progress=False))
        return VLADataset(out)

    def demos(self, env: str, level: str | None = None, episodes: int | None = None, seed: int = 0):
        from vla_sim.data.demos import DemoArrays

        level = level or self.level
        key = (env, level, episodes, seed)
        if key not in self._demos:
            self._demos[key] = DemoArrays.from_dataset(self.dataset(env, level, episodes, seed))
        return self._demos[key]

    def success(self, policy: Any, env: str, level: str | None = None, episodes: int | None = None
                ) -> tuple[float, int, int, float]:
        """(success rate, successes, episodes, mean episode return) over seeded eval episodes
        (seeds ``episode_seed(EVAL_BASE_SEED, i)``, as ``rollout_success_rate``). The mean dense
        return is reported too: at small budgets success is often 0 for every arm, and the return
        still shows which arm gets closer."""
        import gymnasium as gym

        from vla_sim.data.collect import resolve_env_id
        from vla_sim.utils.seeding import EVAL_BASE_SEED, episode_seed

        n = episodes or self.size.eval_episodes
        level = level or self.level
        e = gym.make(resolve_env_id(env), image_size=self.size.image_size, randomization=level)
        wins, returns = 0, []
        try:
            for i in range(n):
                obs, info = e.reset(seed=episode_seed(EVAL_BASE_SEED, i))
                if hasattr(policy, "reset"):
                    policy.reset()
                done, total = False, 0.0
                while not done:
                    obs, reward, terminated, truncated, info = e.step(policy.act(obs))
                    total += float(reward)
                    done = terminated or truncated
                wins += bool(info.get("is_success", False))
                returns.append(total)
        finally:
            e.close()
        return wins / n, wins, n, float(np.mean(returns))

    def run_dir(self, name: str) -> Path:
        path = self.work / "runs" / name
        if path.exists():
            shutil.rmtree(path)
        return path

    # --- shared baseline ---------------------------------------------------------------------
    def reach_bc(self):
        """Plain BC on Reach (the baseline of vl, ae and the start of continual)."""
        if "reach_bc" not in self.results.setdefault("_cache", {}):
            from vla_sim.agents.policies import load_policy
            from vla_sim.agents.training.bc import train_bc

            t0 = time.perf_counter()
            res = train_bc(self.demos("Reach"), self.run_dir("reach_bc"), bc_config(self.size))
            policy = load_policy(res.out_dir / "last")
            self.results["_cache"]["reach_bc"] = policy
            self.results["reach_bc"] = {"success": fmt_rate(self.success(policy, "Reach")),
                                        "final_loss": res.train_losses[-1],
                                        "train_s": time.perf_counter() - t0}
            print(f"  baseline Reach BC ({self.size.bc_steps} steps): "
                  f"{self.results['reach_bc']['success']}", flush=True)
        return self.results["_cache"]["reach_bc"]


def fmt_rate(r: tuple[float, int, int, float]) -> str:
    from vla_sim.evaluation.stats import wilson_interval

    lo, hi = wilson_interval(r[1], r[2])
    return f"{r[0]:.2f} ({r[1]}/{r[2]}, CI {lo:.2f}-{hi:.2f}; return {r[3]:.1f})"


# ------------------------------------------------------------------------------------ sections
def section_vl(b: Bench) -> None:
    from vla_sim.agents.policies import load_policy
    from vla_sim.agents.training.pretrain_vl import (VLPretrainConfig, init_policy_vision,
                                                     make_pairs, pretrain_vl, train_bc_with_init)

    demos = b.demos("Reach")
    out = {}
    for text in ("instruction", "description"):
        cfg = VLPretrainConfig(steps=b.size.vl_steps, batch_size=64, text=text, device="cpu",
                               num_threads=1, policy=policy_config(b.size))
        descriptions = None
        if text == "description":
            from vla_sim.agents.training.pretrain_vl import describe_scene

            ds = b.dataset("Reach", b.level)
            descriptions = {int(e): describe_scene(ds.reader.episode_record(int(e))["randomization"])
                            for e in np.unique(demos.episode_index)}
        t0 = time.perf_counter()
        res = pretrain_vl(make_pairs(demos, "image", text, descriptions), cfg)
        out[text] = {"retrieval_before": res.retrieval_before,
                     "retrieval_after": res.retrieval_after, "chance": res.chance,
                     "retrieval_train": res.retrieval_train, "chance_train": res.chance_train,
                     "texts": res.num_texts, "loss_first": res.losses[0], "loss_last": res.losses[-1],
                     "pretrain_s": time.perf_counter() - t0}
        print(f"  VL pre-training on {text}s ({res.num_texts} distinct, {cfg.steps} steps): "
              f"InfoNCE {res.losses[0]:.3f} -> {np.mean(res.losses[-20:]):.3f}; retrieval "
              f"1-of-{cfg.retrieval_k}: training episodes {res.retrieval_train:.3f} (chance "
              f"{res.chance_train:.3f}); zero-shot on held-out episodes and their unseen texts "
              f"{res.retrieval_before:.3f} -> {res.retrieval_after:.3f} (chance {res.chance:.3f})",
              flush=True)
        if text == "instruction":
            model = res.model
    base = b.reach_bc()
    run = train_bc_with_init(demos, b.run_dir("reach_bc_vl"), bc_config(b.size),
                             lambda p: init_policy_vision(p, model))
    vl_policy = load_policy(run.out_dir / "last")
    with_vl = fmt_rate(b.success(vl_policy, "Reach"))
    out["bc_without"] = b.results["reach_bc"]["success"]
    out["bc_with_vl_init"] = with_vl
    out["bc_final_loss"] = {"without": b.results["reach_bc"]["final_loss"],
                            "with": run.train_losses[-1]}
    b.results["vl"] = out
    print(f"  Reach BC success, {b.size.bc_steps} steps: without VL init {out['bc_without']}; "
          f"with VL init {with_vl}; final BC loss {out['bc_final_loss']['without']:.4f} vs "
          f"{out['bc_final_loss']['with']:.4f}", flush=True)
    del base


def section_ae(b: Bench) -> None:
    from vla_sim.agents.policies import load_policy
    from vla_sim.agents.training.bc import train_bc
    from vla_sim.agents.policies.latent import ActionAEConfig, LatentActionPolicy
    from vla_sim.agents.training.pretrain_action import latent_demos, train_action_ae

    demos = b.demos("Reach")
    out = {}
    for chunk, latent in ((1, 4), (4, 4), (4, 8)):
        cfg = ActionAEConfig(chunk=chunk, latent_dim=latent, steps=b.size.ae_steps, num_threads=1)
        res = train_action_ae(demos.actions, demos.episode_index, cfg)
        out[f"chunk{chunk}_latent{latent}"] = {"train_mse": res.train_mse, "val_mse": res.val_mse,
                                               "mean_chunk_mse": res.baseline_mse}
        print(f"  action AE chunk {chunk}, latent {latent}: reconstruction MSE train "
              f"{res.train_mse:.5f}, held-out {res.val_mse:.5f} (mean-chunk predictor "
              f"{res.baseline_mse:.5f})", flush=True)
        if (chunk, latent) == (4, 4):
            ae = res.model
    b.reach_bc()
    bcfg = bc_config(b.size)
    bcfg.policy = dataclasses.replace(bcfg.policy, action_dim=ae.cfg.latent_dim)
    run = train_bc(latent_demos(demos, ae), b.run_dir("reach_bc_latent"), bcfg)
    latent = LatentActionPolicy(load_policy(run.out_dir / "last"), ae, execute_steps=1)
    out["bc_raw"] = b.results["reach_bc"]["success"]
    out["bc_latent_chunk4"] = fmt_rate(b.success(latent, "Reach"))
    b.results["ae"] = out
    print(f"  Reach BC success: raw actions {out['bc_raw']}; AE latent (chunk 4, re-plan every "
          f"step) {out['bc_latent_chunk4']}", flush=True)


def section_multitask(b: Bench) -> None:
    from vla_sim.agents.training.multitask import MultiTaskConfig, MultiTaskData, train_multitask

    data = MultiTaskData.concat([
        MultiTaskData(b.demos(env), [task], np.zeros(len(b.demos(env).states), np.int64))
        for env, task in (("Reach", "reach"), ("Push", "push"))])
    out = {}
    for heads in ("shared", "per-task"):
        res = train_multitask(data, MultiTaskConfig(heads=heads, bc=bc_config(b.size)))
        out[heads] = {}
        for env, task in (("Reach", "reach"), ("Push", "push")):
            if heads == "per-task":
                res.policy.set_task(task)  # the task id is known; the classifier is reported below
            out[heads][task] = fmt_rate(b.success(res.policy, env))
        out[heads]["val_loss"] = res.val_loss_per_task
        print(f"  multi-task BC, {heads} head(s), {b.size.bc_steps} steps: Reach {out[heads]['reach']}; "
              f"Push {out[heads]['push']}; val loss {json.dumps({k: round(v, 4) for k, v in res.val_loss_per_task.items()})}"
              + ("" if res.classifier_accuracy is None
                 else f"; task classifier accuracy {res.classifier_accuracy:.2f}"), flush=True)
    b.results["multitask"] = out


def section_continual(b: Bench) -> None:
    import copy

    from vla_sim.agents.training.continual import ContinualConfig, finetune_with_replay

    base = b.reach_bc()
    reach_before = b.results["reach_bc"]["success"]
    push_before = fmt_rate(b.success(base, "Push"))
    out = {"reach_before": reach_before, "push_before": push_before}
    for name, ratio in (("no_replay", 0.0), ("replay", 0.5)):
        policy = copy.deepcopy(base)
        cfg = ContinualConfig(replay_size=2000, replay_ratio=ratio, lr_scale=0.3,
                              steps=b.size.finetune_steps, bc=bc_config(b.size))
        finetune_with_replay(policy, b.demos("Push"), [b.demos("Reach")], cfg)
        out[name] = {"reach_after": fmt_rate(b.success(policy, "Reach")),
                     "push_after": fmt_rate(b.success(policy, "Push"))}
        print(f"  Reach policy fine-tuned on Push ({cfg.steps} steps, lr x{cfg.lr_scale}, replay "
              f"ratio {ratio}): Reach {reach_before} -> {out[name]['reach_after']}; Push "
              f"{push_before} -> {out[name]['push_after']}", flush=True)
    b.results["continual"] = out


def section_curriculum(b: Bench) -> None:
    from vla_sim.agents.training.curriculum import (CurriculumConfig, CurriculumScheduler,
                                                    CurriculumStage, train_bc_curriculum)

    levels = ("none", "low", "medium")
    per = max(4, b.size.episodes // len(levels))
    stage_data = [b.demos("Reach", lv, per, seed=100 + i) for i, lv in enumerate(levels)]
    final_data = b.demos("Reach", "medium", per * len(levels), seed=200)

    def evaluate(policy, stage):
        return b.success(policy, "Reach", stage.level, b.size.curriculum_eval_episodes)[0]

    out = {}
    arms = {
        "curriculum": (f"none->low->medium at {b.threshold}", stage_data,
                       [CurriculumStage(lv) for lv in levels]),
        "final_level_only": ("medium data from the start", [final_data], [CurriculumStage("medium")]),
        "all_levels_mixed": ("none+low+medium data mixed from the start",
                             [_concat(stage_data)], [CurriculumStage("medium")]),
    }
    for name, (desc, data, stages) in arms.items():
        sched = CurriculumScheduler(CurriculumConfig(stages=stages, threshold=b.threshold))
        res = train_bc_curriculum(data, sched, evaluate, bc_config(b.size),
                                  eval_every_grad_steps=b.size.curriculum_eval_every)
        final = fmt_rate(b.success(res.policy, "Reach", "medium"))
        out[name] = {"final_medium_success": final,
                     "advances": [(a.step, a.to_name) for a in sched.history],
                     "evaluations": res.evaluations}
        print(f"  Reach BC {desc}: success at medium {final}; advances "
              f"{out[name]['advances'] or 'none'}", flush=True)
    b.results["curriculum"] = out


def _concat(parts):
    from vla_sim.data.demos import concat_demos

    return concat_demos(parts)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="small sizes (minutes, wide intervals)")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated of {SECTIONS}")
    ap.add_argument("--work", default="/tmp/vla_techniques_bench", help="datasets and runs")
    ap.add_argument("--eval-episodes", type=int, default=None, help="override the size's value")
    ap.add_argument("--bc-steps", type=int, default=None, help="override the size's value")
    ap.add_argument("--level", default="none", choices=["none", "low", "medium", "high"],
                    help="randomization of data and evaluation outside the curriculum section "
                         "(default none: at small budgets BC gets 0%% at 'low' on every arm)")
    ap.add_argument("--curriculum-threshold", type=float, default=0.8,
                    help="success rate that advances the curriculum (small runs rarely reach 0.8)")
    args = ap.parse_args(argv)
    size = SMALL if args.small else FULL
    if args.eval_episodes:
        size = dataclasses.replace(size, eval_episodes=args.eval_episodes)
    if args.bc_steps:
        size = dataclasses.replace(size, bc_steps=args.bc_steps, finetune_steps=args.bc_steps // 2)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        ap.error(f"unknown sections {bad}; choose from {SECTIONS}")
    torch.set_num_threads(1)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(work, size, args.level)
    bench.threshold = args.curriculum_threshold
    print(f"techniques benchmark ({'small' if args.small else 'full'}, level {args.level}): "
          f"{dataclasses.asdict(size)}")
    for name in only:
        t0 = time.perf_counter()
        print(f"[{name}]", flush=True)
        globals()[f"section_{name}"](bench)
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    results = {k: v for k, v in bench.results.items() if not k.startswith("_")}
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"results in {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
