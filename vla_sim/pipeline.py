"""The quickstart pipeline: collect demonstrations -> (scene frames) -> BC -> DAgger -> PPO ->
evaluate -> report.

Each stage writes into one run folder and leaves a ``.done`` marker when complete; a re-run skips
finished stages, resumes BC from its last checkpoint and restarts an unfinished PPO stage (short
by design), so an interrupted quickstart continues instead of starting over; DAgger resumes at
its first unfinished round. With ``dagger.scene_frames`` the labelled scene frames
(:mod:`vla_sim.data.scene_frames`) are rendered once and train both the BC stage and DAgger.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla_sim.agents.training.configs import BCConfig, DAggerConfig, PPOConfig
from vla_sim.data.collect import CollectConfig
from vla_sim.evaluation.evaluator import EvalConfig
from vla_sim.utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)




@dataclass
class QuickstartConfig:
    """Everything the quickstart does, in one file (see vla_sim/configs/quickstart.yaml).

    The stages are the real configs of ``vla-sim collect``, ``train bc``, ``train dagger``,
    ``train ppo`` and ``eval`` (every field and default defined once, there). The top-level fields are the ones
    the stages must agree on; the quickstart writes them into every stage (env, robot,
    randomization, image size, cameras, seed), so a stage's own copy of them is ignored. The
    one exception is ``dagger.seed``: DAgger's rollouts (and the scene frames) must not
    replay the demonstrations' scenes, so it keeps its own.
    """

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
    data: CollectConfig = field(default_factory=CollectConfig)
    bc: BCConfig = field(default_factory=BCConfig)
    dagger: DAggerConfig = field(default_factory=lambda: DAggerConfig(rounds=0))
    """DAgger rounds on the BC policy (``dagger.rounds = 0`` skips them): the learner's
    rollouts, labelled by the scripted expert, join the data and BC continues from the last
    policy for ``dagger.round_steps`` steps. Its BC settings are the ``bc`` section's; its
    ``scene_frames`` are rendered once and also train the BC stage."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """``ppo.total_env_steps = 0`` skips PPO."""
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        import gymnasium as gym

        import vla_sim  # noqa: F401  (registers env ids)

        if self.env not in gym.registry:
            from vla_sim.envs.registration import ENV_IDS

            raise ValueError(f"unknown env {self.env!r}; valid: {sorted(ENV_IDS)}")
        from vla_sim.envs.cameras import CAMERA_KEYS

        bad = [c for c in self.cameras if c not in CAMERA_KEYS]
        if not self.cameras or bad:
            raise ValueError(f"cameras must be a non-empty list of {sorted(CAMERA_KEYS)}, "
                             f"got {self.cameras}")
        # The shared settings, written into every stage.
        cams = list(self.cameras)
        self.data.env, self.data.robot, self.data.randomization = self.env, self.robot, \
            self.randomization
        self.data.image_size, self.data.cameras, self.data.seed = self.image_size, tuple(cams), \
            self.seed
        self.bc.seed = self.seed
        self.bc.policy.image_size, self.bc.policy.cameras = self.image_size, cams
        self.dagger.bc = copy.deepcopy(self.bc)  # rollouts' env: the demonstrations'
        self.dagger.env, self.dagger.randomization = self.env, self.randomization
        self.dagger.check_scene_frames()
        self.ppo.env_id, self.ppo.robot, self.ppo.randomization = self.env, self.robot, \
            self.randomization
        self.ppo.seed = self.seed
        self.eval.env_ids, self.eval.robot = [self.env], self.robot
        self.eval.randomization, self.eval.image_size, self.eval.cameras = \
            [self.randomization], self.image_size, cams


PRESETS: dict[str, list[str]] = {
    "default": [],
    # A smoke test of every stage in a few minutes on 2 CPU cores: learns little.
    "tiny": ["data.episodes=4", "bc.steps=60", "bc.batch_size=32", "bc.warmup_steps=6",
             "bc.checkpoint_every_grad_steps=60", "ppo.total_env_steps=64", "ppo.n_steps=32",
             "ppo.batch_size=32", "ppo.eval_episodes=3", "eval.episodes=3", "eval.videos=1",
             "eval.render_size=128", "dagger.rounds=1", "dagger.episodes_per_round=2",
             "dagger.round_steps=6", "dagger.scene_frames=16"],
}


RUN_ONLY_KEYS = frozenset({"workers", "backend", "ray_address", "progress", "num_threads",
                           "tensorboard"})
"""Settings that change how a stage runs, not what it produces (outcomes are identical for any
worker count or backend): changing them reuses a finished stage."""


def stage_key(*parts: Any) -> str:
    """A short hash of a stage's settings and of the stages it reads from: a finished stage is
    reused only while this key is unchanged."""
    import hashlib

    def settled(value: Any) -> Any:  # drop how-to-run keys: they change no result
        if isinstance(value, dict):
            return {k: settled(v) for k, v in value.items() if k not in RUN_ONLY_KEYS}
        if isinstance(value, (list, tuple)):
            return [settled(v) for v in value]
        return value

    text = json.dumps([settled(dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p)
                       for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_config_path() -> Path:
    from importlib.resources import files

    return Path(str(files("vla_sim.configs").joinpath("quickstart.yaml")))


def _finished(stage: Path, key: str) -> bool:
    """True when ``stage`` finished with the same settings (``key``). A marker with other
    settings is removed, with the stage's outputs, so the stage runs again."""
    marker = stage / ".done"
    if not marker.exists():
        return False
    if json.loads(marker.read_text()).get("key") == key:
        return True
    _log(f"{stage.name}: settings changed since it finished; running it again")
    marker.unlink()
    return False


def _mark_done(stage: Path, key: str, info: dict[str, Any]) -> None:
    atomic_write_json(stage / ".done", {"key": key, **info})


def _fresh(path: Path) -> None:
    """Remove a stage's outputs left by other settings (they cannot be resumed)."""
    if path.exists():
        shutil.rmtree(path)


def _log(msg: str) -> None:
    log.info("[quickstart] %s", msg)


def run_quickstart(cfg: QuickstartConfig, out: Path) -> dict[str, Any]:
    """Run every unfinished stage into ``out``; returns the summary (also in summary.json).

    A stage is skipped when it finished with the same settings as now (its own and those of
    the stages it reads); otherwise it runs again, and so does everything after it."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    threads = cfg.threads or min(4, torch.get_num_threads())
    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    atomic_write_json(out / "quickstart_config.json", dataclasses.asdict(cfg))
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    stages = out / "stages"

    # 1. demonstrations ---------------------------------------------------------------------
    data_dir = out / "data"
    data_cfg = dataclasses.replace(cfg.data, out=str(data_dir))
    data_key = stage_key("data", data_cfg.identity(), data_cfg.episodes)
    t0 = time.perf_counter()
    if _finished(stages / "data", data_key):
        _log(f"data: complete, skipping ({data_dir})")
    else:
        from vla_sim.data.collect import collect

        if _collected_with_other_settings(data_dir, data_cfg):
            _fresh(data_dir)
        _log(f"data: collecting {data_cfg.episodes} expert episodes of {cfg.env}")
        res = collect(data_cfg)
        if not res.reached_target:
            raise RuntimeError(f"the expert reached only {res.successes} successes in "
                               f"{res.attempts} attempts; see {data_dir}")
        _mark_done(stages / "data", data_key, {"episodes": res.episodes})
    timings["data_s"] = time.perf_counter() - t0

    # 2. scene frames (with dagger.scene_frames): rendered once, for BC and DAgger ----------
    scene, scene_key = None, ""
    if cfg.dagger.scene_frames:
        from vla_sim.data.scene_frames import (SCENE_BASE_SEED, load_scene_frames,
                                               scene_frames_file)

        scene_dir = out / "scene_frames"
        scene_key = stage_key("scene_frames", cfg.dagger.scene_frames, cfg.dagger.scene_views,
                              cfg.dagger.seed, data_key,
                              *([cfg.dagger.scene_randomization]
                                if cfg.dagger.scene_randomization else []))
        t0 = time.perf_counter()
        frames_path = scene_dir / "frames.npz"
        if _finished(stages / "scene_frames", scene_key):
            try:
                scene = load_scene_frames(frames_path)
                _log(f"scene frames: complete, skipping ({scene_dir})")
            except ValueError as exc:  # missing or damaged: render them again
                _log(f"scene frames: {exc}; rendering them again")
        if scene is None:
            _fresh(scene_dir)
            scene_dir.mkdir(parents=True)
            _log(f"scene frames: rendering {cfg.dagger.scene_frames} labelled frames")
            scene, _ = scene_frames_file(frames_path, cfg.dagger.scene_settings(data_cfg),
                                         cfg.dagger.scene_frames,
                                         cfg.dagger.scene_views,
                                         SCENE_BASE_SEED + cfg.dagger.seed, cfg.data.workers)
            _mark_done(stages / "scene_frames", scene_key, {"frames": len(scene.states)})
        timings["scene_frames_s"] = time.perf_counter() - t0

    # 3. behaviour cloning ------------------------------------------------------------------
    bc_dir = out / "bc"
    bc_cfg = dataclasses.replace(cfg.bc, device=device)
    bc_key = stage_key("bc", bc_cfg, data_key, *([scene_key] if scene_key else []))
    t0 = time.perf_counter()
    if _finished(stages / "bc", bc_key):
        _log(f"bc: complete, skipping ({bc_dir})")
    else:
        from vla_sim.agents.training.bc import train_bc
        from vla_sim.data.demos import DemoArrays
        from vla_sim.data.torch_dataset import VLADataset

        started = stages / "bc" / "started.json"
        resume = (bc_dir / "last").exists() and started.exists() and \
            json.loads(started.read_text()).get("key") == bc_key
        if not resume:
            _fresh(bc_dir)
            atomic_write_json(started, {"key": bc_key})
        _log(f"bc: {'resuming' if resume else 'training'} for {bc_cfg.steps} steps on {device}")
        result = train_bc(DemoArrays.from_dataset(VLADataset(data_dir)), bc_dir, bc_cfg,
                          resume=resume, scene_frames=scene)
        _mark_done(stages / "bc", bc_key, {"steps": result.steps,
                                           "samples_per_s": result.samples_per_s})
    timings["bc_s"] = time.perf_counter() - t0
    bc_policy = bc_dir / "last"

    # 4. DAgger on the BC policy ------------------------------------------------------------
    dagger_dir, dagger_policy = out / "dagger", None
    dagger_key = stage_key("dagger", cfg.dagger, bc_key)
    t0 = time.perf_counter()
    if cfg.dagger.rounds > 0:
        if _finished(stages / "dagger", dagger_key):
            _log(f"dagger: complete, skipping ({dagger_dir})")
        else:
            from vla_sim.agents.training.dagger import STATE_FILE, train_dagger

            started = stages / "dagger" / "started.json"
            resume = (dagger_dir / STATE_FILE).exists() and started.exists() and \
                json.loads(started.read_text()).get("key") == dagger_key
            if not resume:
                _fresh(dagger_dir)
                atomic_write_json(started, {"key": dagger_key})
            dcfg = dataclasses.replace(cfg.dagger, init_policy=str(bc_policy),
                                       bc=dataclasses.replace(cfg.dagger.bc, device=device))
            _log(f"dagger: {'resuming' if resume else 'running'} {dcfg.rounds} rounds of "
                 f"{dcfg.episodes_per_round} rollouts + {dcfg.round_steps} BC steps")
            res = train_dagger(data_dir, dagger_dir, dcfg, resume=resume,
                               scene_frames=scene)
            _mark_done(stages / "dagger", dagger_key, {"rounds": res.rounds_completed})
        dagger_policy = dagger_dir / "last"
    timings["dagger_s"] = time.perf_counter() - t0
    policy, policy_key = (dagger_policy, dagger_key) if dagger_policy else (bc_policy, bc_key)

    # 5. PPO fine-tuning --------------------------------------------------------------------
    ppo_dir = out / "ppo"
    ppo_key = stage_key("ppo", cfg.ppo, policy_key)
    t0 = time.perf_counter()
    ppo_policy = None
    if cfg.ppo.total_env_steps > 0:
        if _finished(stages / "ppo", ppo_key):
            _log(f"ppo: complete, skipping ({ppo_dir})")
        else:
            from vla_sim.agents.training.ppo import train_ppo

            _fresh(ppo_dir)  # an interrupted PPO stage restarts (it is short)
            _log(f"ppo: fine-tuning for {cfg.ppo.total_env_steps} env steps, reward {cfg.ppo.reward}")
            train_ppo(cfg.ppo, ppo_dir, init=policy)
            _mark_done(stages / "ppo", ppo_key, {"total_env_steps": cfg.ppo.total_env_steps})
        ppo_policy = ppo_dir / "last"
    timings["ppo_s"] = time.perf_counter() - t0

    # 6. evaluation on held-out seeds (and held-out instructions); videos of the final policy
    t0 = time.perf_counter()
    policies = {"bc": (bc_policy, bc_key), "dagger": (dagger_policy, dagger_key),
                "ppo": (ppo_policy, ppo_key)}
    policies = {name: pk for name, pk in policies.items() if pk[0] is not None}
    final = list(policies)[-1]
    results = {name: _evaluate(cfg, path, out / "eval" / name, videos=name == final,
                               key=stage_key("eval", cfg.eval, key))
               for name, (path, key) in policies.items()}
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


def _collected_with_other_settings(data_dir: Path, data_cfg: Any) -> bool:
    """A dataset folder left by a collection with other settings (it would refuse to resume)."""
    from vla_sim.data import format as fmt

    state = data_dir / fmt.COLLECT_STATE_PATH
    if not state.exists():
        return False
    return json.loads(state.read_text()).get("config") != data_cfg.identity()


def _evaluate(cfg: QuickstartConfig, policy_dir: Path, out: Path, videos: bool,
              key: str) -> dict:
    """Evaluate one checkpoint (skipped when its report exists with the same settings);
    returns per-split figures."""
    report_path = out / "report.json"
    if not _finished(out, key):
        from vla_sim.evaluation import PolicySpec, evaluate, write_report

        _fresh(out)
        _log(f"eval: {policy_dir} on {cfg.eval.episodes} held-out seeds x {cfg.eval.splits}")
        ecfg = dataclasses.replace(cfg.eval, video_dir=str(out / "videos") if videos else None,
                                   record=cfg.eval.record if videos else "none")
        result = evaluate(PolicySpec("checkpoint", str(policy_dir)), ecfg)
        write_report(result, out)
        _mark_done(out, key, {})
    report = json.loads(report_path.read_text())
    per_split = {}
    for cell in report["cells"]:
        per_split[cell["split"]] = {"success_rate": cell["success_rate"],
                                    "ci95": [cell["ci_low"], cell["ci_high"]],
                                    "episodes": cell["episodes"]}
    vids = sorted(str(p) for p in (out / "videos").glob("*.mp4")) if (out / "videos").exists() else []
    return {"per_split": per_split, "report": str(out / "report.html"), "videos": vids}


STAGE_NAMES = {"bc": "BC", "dagger": "DAgger", "ppo": "PPO"}


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
        lines.append(f"| {STAGE_NAMES.get(name, name)} | " + " | ".join(cells) + " |")
    t = summary["timings"]
    lines += ["", "success rate with 95% Wilson interval, on evaluation seeds disjoint from "
              "training", f"time: data {t['data_s']:.0f} s, "
              + (f"scene frames {t['scene_frames_s']:.0f} s, " if "scene_frames_s" in t else "")
              + f"BC {t['bc_s']:.0f} s, DAgger "
              f"{t.get('dagger_s', 0):.0f} s, PPO {t['ppo_s']:.0f} s, eval {t['eval_s']:.0f} s, "
              f"total {t['total_s']:.0f} s"]
    last = res[list(res)[-1]]
    lines.append(f"report: {last['report']}")
    if last["videos"]:
        lines.append(f"videos: {', '.join(last['videos'])}")
    return "\n".join(lines)
