"""The quickstart pipeline: collect demonstrations -> BC -> PPO -> evaluate -> report.

Each stage writes into one run folder and leaves a ``.done`` marker when complete; a re-run skips
finished stages, resumes BC from its last checkpoint and restarts an unfinished PPO stage (short
by design), so an interrupted quickstart continues instead of starting over.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla_sim.utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class DataStage:
    episodes: int = 600
    """Successful expert demonstrations to collect."""
    workers: int = 1
    noise: float = 0.3
    """DART noise: the env executes expert action + N(0, noise); the label stays the expert's."""


@dataclass
class BCStage:
    steps: int = 4000
    batch_size: int = 64
    lr: float = 3e-4
    eval_episodes: int = 0
    """In-sim checks during BC (0: only the final evaluation stage)."""
    aux_weight: float = 1.0
    """Auxiliary goal-state loss (BCConfig.aux_weight); 0 turns it off."""
    instruction_aug: int = 8
    """Other wordings per episode for language augmentation (BCConfig.instruction_aug); 0 = off."""


@dataclass
class PPOStage:
    total_steps: int = 2048
    """Env steps of PPO fine-tuning; 0 skips PPO."""
    n_steps: int = 256
    n_envs: int = 1
    reward: str = "dense"
    """sparse | dense | language | mixed."""


@dataclass
class EvalStage:
    episodes: int = 30
    """Episodes per instruction split."""
    splits: list[str] = field(default_factory=lambda: ["train", "heldout"])
    videos: int = 2
    """Recorded episodes per split (mp4)."""
    render_size: int = 192
    workers: int = 1


@dataclass
class QuickstartConfig:
    """Everything the quickstart does, in one file (see vla_sim/configs/quickstart.yaml)."""

    env: str = "vla_sim/Reach-v0"
    robot: str = "panda"
    randomization: str = "low"
    image_size: int = 64
    cameras: list[str] = field(default_factory=lambda: ["front", "wrist"])
    """Cameras recorded and fed to the policy; the wrist view is what makes grasps and
    target picks precise (Reach BC 54% -> 82% measured)."""
    seed: int = 0
    threads: int = 0
    """torch CPU threads; 0 = one per core (at most 4)."""
    data: DataStage = field(default_factory=DataStage)
    bc: BCStage = field(default_factory=BCStage)
    ppo: PPOStage = field(default_factory=PPOStage)
    eval: EvalStage = field(default_factory=EvalStage)

    def __post_init__(self) -> None:
        import gymnasium as gym

        import vla_sim  # noqa: F401  (registers env ids)

        if self.env not in gym.registry:
            from vla_sim.envs.registration import ENV_IDS

            raise ValueError(f"unknown env {self.env!r}; valid: {sorted(ENV_IDS)}")
        for name, value in (("data.episodes", self.data.episodes), ("bc.steps", self.bc.steps),
                            ("eval.episodes", self.eval.episodes)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        from vla_sim.agents.policies.config import CAMERA_KEYS

        bad = [c for c in self.cameras if c not in CAMERA_KEYS]
        if not self.cameras or bad:
            raise ValueError(f"cameras must be a non-empty list of {sorted(CAMERA_KEYS)}, "
                             f"got {self.cameras}")
        if self.ppo.total_steps < 0:
            raise ValueError(f"ppo.total_steps must be >= 0, got {self.ppo.total_steps}")


PRESETS: dict[str, list[str]] = {
    "default": [],
    # A smoke test of every stage in a few minutes on 2 CPU cores: learns little.
    "tiny": ["data.episodes=4", "bc.steps=60", "bc.batch_size=32", "ppo.total_steps=64",
             "ppo.n_steps=32", "eval.episodes=3", "eval.videos=1", "eval.render_size=128"],
}


def default_config_path() -> Path:
    from importlib.resources import files

    return Path(str(files("vla_sim.configs").joinpath("quickstart.yaml")))


def _done(path: Path) -> bool:
    return (path / ".done").exists()


def _mark_done(path: Path, info: dict[str, Any]) -> None:
    atomic_write_json(path / ".done", info)


def _log(msg: str) -> None:
    log.info("[quickstart] %s", msg)


def run_quickstart(cfg: QuickstartConfig, out: Path) -> dict[str, Any]:
    """Run every unfinished stage into ``out``; returns the summary (also in summary.json)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    threads = cfg.threads or min(4, torch.get_num_threads())
    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    atomic_write_json(out / "quickstart_config.json", dataclasses.asdict(cfg))
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    # 1. demonstrations ---------------------------------------------------------------------
    data_dir = out / "data"
    t0 = time.perf_counter()
    if _done(out / "stages" / "data"):
        _log(f"data: complete, skipping ({data_dir})")
    else:
        from vla_sim.data.collect import CollectConfig, collect

        _log(f"data: collecting {cfg.data.episodes} expert episodes of {cfg.env}")
        res = collect(CollectConfig(out=str(data_dir), env=cfg.env, robot=cfg.robot,
                                    episodes=cfg.data.episodes, randomization=cfg.randomization,
                                    seed=cfg.seed, workers=cfg.data.workers, noise=cfg.data.noise,
                                    image_size=cfg.image_size, cameras=tuple(cfg.cameras),
                                    progress=True))
        if not res.reached_target:
            raise RuntimeError(f"the expert reached only {res.successes} successes in "
                               f"{res.attempts} attempts; see {data_dir}")
        _mark_done(out / "stages" / "data", {"episodes": res.episodes})
    timings["data_s"] = time.perf_counter() - t0

    # 2. behaviour cloning ------------------------------------------------------------------
    bc_dir = out / "bc"
    t0 = time.perf_counter()
    if _done(out / "stages" / "bc"):
        _log(f"bc: complete, skipping ({bc_dir})")
    else:
        from vla_sim.agents.training.bc import BCConfig, train_bc
        from vla_sim.data.demos import DemoArrays
        from vla_sim.data.torch_dataset import VLADataset

        resume = (bc_dir / "last").exists()
        _log(f"bc: {'resuming' if resume else 'training'} for {cfg.bc.steps} steps on {device}")
        bc_cfg = BCConfig(steps=cfg.bc.steps, batch_size=cfg.bc.batch_size, lr=cfg.bc.lr,
                          seed=cfg.seed, device=device, aux_weight=cfg.bc.aux_weight,
                          instruction_aug=cfg.bc.instruction_aug,
                          checkpoint_every=max(1, min(500, cfg.bc.steps)),
                          warmup_steps=min(200, cfg.bc.steps // 10))
        bc_cfg.policy.image_size = cfg.image_size
        bc_cfg.policy.cameras = list(cfg.cameras)
        result = train_bc(DemoArrays.from_dataset(VLADataset(data_dir)), bc_dir, bc_cfg,
                          resume=resume)
        _mark_done(out / "stages" / "bc", {"steps": result.steps,
                                           "samples_per_s": result.samples_per_s})
    timings["bc_s"] = time.perf_counter() - t0
    bc_policy = bc_dir / "last"

    # 3. PPO fine-tuning --------------------------------------------------------------------
    ppo_dir = out / "ppo"
    t0 = time.perf_counter()
    ppo_policy = None
    if cfg.ppo.total_steps > 0:
        if _done(out / "stages" / "ppo"):
            _log(f"ppo: complete, skipping ({ppo_dir})")
        else:
            from vla_sim.agents.training.ppo import PPOConfig, train_ppo

            if ppo_dir.exists():  # an interrupted PPO stage restarts (it is short)
                shutil.rmtree(ppo_dir)
            _log(f"ppo: fine-tuning for {cfg.ppo.total_steps} env steps, reward {cfg.ppo.reward}")
            ppo_cfg = PPOConfig(env_id=cfg.env, robot=cfg.robot, randomization=cfg.randomization,
                                reward=cfg.ppo.reward, n_envs=cfg.ppo.n_envs,
                                total_steps=cfg.ppo.total_steps, n_steps=cfg.ppo.n_steps,
                                batch_size=min(64, cfg.ppo.n_steps * cfg.ppo.n_envs),
                                eval_episodes=max(2, min(10, cfg.eval.episodes)),
                                seed=cfg.seed, device=device)
            train_ppo(ppo_cfg, ppo_dir, init=bc_policy)
            _mark_done(out / "stages" / "ppo", {"total_steps": cfg.ppo.total_steps})
        ppo_policy = ppo_dir / "last"
    timings["ppo_s"] = time.perf_counter() - t0

    # 4. evaluation on held-out seeds (and held-out instructions) ---------------------------
    t0 = time.perf_counter()
    results = {"bc": _evaluate(cfg, bc_policy, out / "eval" / "bc", videos=ppo_policy is None)}
    if ppo_policy is not None:
        results["ppo"] = _evaluate(cfg, ppo_policy, out / "eval" / "ppo", videos=True)
    timings["eval_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start

    summary = {"env": cfg.env, "robot": cfg.robot, "randomization": cfg.randomization,
               "device": device, "threads": threads, "results": results, "timings": timings,
               "run_dir": str(out)}
    atomic_write_json(out / "summary.json", summary)
    table = format_summary(summary)
    atomic_write_text(out / "summary.md", table + "\n")
    log.info("%s", table)
    return summary


def _evaluate(cfg: QuickstartConfig, policy_dir: Path, out: Path, videos: bool) -> dict:
    """Evaluate one checkpoint (skipped when its report exists); returns per-split figures."""
    report_path = out / "report.json"
    if not report_path.exists():
        from vla_sim.evaluation import EvalConfig, PolicySpec, evaluate, write_report

        _log(f"eval: {policy_dir} on {cfg.eval.episodes} held-out seeds x {cfg.eval.splits}")
        ecfg = EvalConfig(env_ids=[cfg.env], robot=cfg.robot, episodes=cfg.eval.episodes,
                          splits=list(cfg.eval.splits), randomization=[cfg.randomization],
                          image_size=cfg.image_size, cameras=list(cfg.cameras),
                          workers=cfg.eval.workers,
                          video_dir=str(out / "videos") if videos else None,
                          record="first" if videos else "none",
                          videos=cfg.eval.videos, render_size=cfg.eval.render_size)
        result = evaluate(PolicySpec("checkpoint", str(policy_dir)), ecfg)
        write_report(result, out)
    report = json.loads(report_path.read_text())
    per_split = {}
    for cell in report["cells"]:
        per_split[cell["split"]] = {"success_rate": cell["success_rate"],
                                    "ci95": [cell["ci_low"], cell["ci_high"]],
                                    "episodes": cell["episodes"]}
    vids = sorted(str(p) for p in (out / "videos").glob("*.mp4")) if (out / "videos").exists() else []
    return {"per_split": per_split, "report": str(out / "report.html"), "videos": vids}


def format_summary(summary: dict) -> str:
    """A markdown table: success after BC and after PPO, per instruction split."""
    res = summary["results"]
    splits = sorted({s for r in res.values() for s in r["per_split"]},
                    key=lambda s: (s != "train", s))
    lines = [f"vla-sim quickstart: {summary['env']} ({summary['robot']}, randomization "
             f"{summary['randomization']}), run folder {summary['run_dir']}", "",
             "| policy | " + " | ".join(f"{s} instructions" for s in splits) + " |",
             "|---|" + "---|" * len(splits)]
    for name, r in res.items():
        cells = []
        for s in splits:
            c = r["per_split"].get(s)
            cells.append("n/a" if c is None else
                         f"{100 * c['success_rate']:.0f}% [{100 * c['ci95'][0]:.0f}-"
                         f"{100 * c['ci95'][1]:.0f}] (n={c['episodes']})")
        lines.append(f"| {name.upper()} | " + " | ".join(cells) + " |")
    t = summary["timings"]
    lines += ["", "success rate with 95% Wilson interval, on evaluation seeds disjoint from "
              "training", f"time: data {t['data_s']:.0f} s, BC {t['bc_s']:.0f} s, PPO "
              f"{t['ppo_s']:.0f} s, eval {t['eval_s']:.0f} s, total {t['total_s']:.0f} s"]
    last = res.get("ppo", res["bc"])
    lines.append(f"report: {last['report']}")
    if last["videos"]:
        lines.append(f"videos: {', '.join(last['videos'])}")
    return "\n".join(lines)
