"""The trainers' configurations, in one torch-free module: the CLI builds its flags from these
dataclasses (``vla_sim.config.add_config_arguments``) without importing torch or SB3, and a
config file can be checked before any training code loads.

    BCConfig                      behaviour cloning (also DAgger's, multi-task's, continual's)
    DAggerConfig                  DAgger rounds on top of BC
    ContinualConfig               fine-tuning on a new task with replay
    VLPretrainConfig              contrastive vision-language pre-training
    RLConfig                      what PPO, REINFORCE and RLPD share
      PPOConfig, ReinforceConfig, RLPDConfig   each algorithm's own fields
(``ActionAEConfig``, the action autoencoder's, lives with that model in agents/policies/config.py.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from vla_sim.agents.policies.config import VLAPolicyConfig
from vla_sim.envs.registration import EPISODE_STEPS
from vla_sim.envs.wrappers.language_reward import REWARD_MODES
from vla_sim.utils.seeding import DAGGER_BASE_SEED, EVAL_BASE_SEED
from vla_sim.utils.workers import check_backend

if TYPE_CHECKING:
    from vla_sim.data.collect import CollectConfig

TEXT_SOURCES = ("instruction", "description", "both")
"""What VL pre-training pairs each frame with."""
MIXING = ("step", "episode")
"""DAgger: who acts (learner or expert) is drawn every step, or once per episode."""
BC_ANCHORS = ("kl", "mean")
"""PPO's and REINFORCE's pull toward BC: the full KL, or its mean term only."""
PRECISIONS = ("fp32", "bf16")
"""BC's loss precision: fp32, or bf16 autocast (CUDA only)."""
VECTORS = ("sync", "async")
"""REINFORCE's vector envs: SyncVectorEnv (one process) or AsyncVectorEnv (one per env)."""


@dataclass
class BCConfig:
    """Behaviour cloning: AdamW, warm-up + cosine LR, DrQ-style shift and mild colour jitter."""

    # --- Optimisation ---------------------------------------------------------------------------
    steps: int = 5000
    """Gradient steps in total."""
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-4
    """AdamW decay, applied to weight matrices and conv kernels only (not biases, norms, log_std)."""
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05
    """The cosine ends at ``lr * min_lr_ratio``."""
    grad_clip: float = 1.0
    """Max global grad norm; 0 disables clipping."""
    aux_weight: float = 0.0
    """Weight of the auxiliary goal-state loss (predict the instructed object's and destination's
    positions, ``observation.environment_state``, from the policy's features). Needs a dataset
    that records them; sets ``policy.aux_dim`` to their size (the 6 positions) when it is 0."""
    ground_weight: float = 0.0
    """Weight of the grounding loss from the simulator's image-plane labels
    (vla_sim.envs.goal_state): per policy camera, the predicted image coordinates of the
    instructed object, the destination and the current target (object before the grasp,
    destination after), masked where the label is outside the image, plus a heatmap term on
    the spatial queries' attention (``policy.spatial_lang``) and the holding flag's
    cross-entropy. Needs a dataset collected with those labels; sets ``policy.grounding``."""
    scene_batch: int = 32
    """Scene frames (vla_sim.data.scene_frames) per step when ``train_bc`` is given some: a
    second batch, with the same augmentation, that trains only the goal-state and grounding
    losses (at ``aux_weight`` and ``ground_weight``); they carry no action."""

    # --- Augmentation ---------------------------------------------------------------------------
    shift_pad: int = 4
    """Random shift (pad by replication, random crop back; DrQ uses 4 px for 84 px images)."""
    color_jitter: float = 0.1
    """Brightness and contrast factors drawn from [1 - j, 1 + j]. No hue jitter: colour words
    ("red cube") must stay groundable in the pixels."""
    instruction_aug: int = 0
    """Language augmentation: per episode, this many other train-split wordings of the same
    task and objects (templates and synonyms, seeded); each sample then uses one of them with
    probability ``instruction_aug_prob``. Needs datasets that record the roles (collected by
    this version). 0 = off."""
    instruction_aug_prob: float = 0.5

    # --- Validation, evaluation, checkpoints ----------------------------------------------------
    val_fraction: float = 0.1
    """Fraction of episodes held out (whole episodes, chosen by ``seed``) for the val loss."""
    val_every_grad_steps: int = 250
    val_max_samples: int = 2048
    eval_every_grad_steps: int = 0
    """Steps between in-sim success evaluations (needs an ``eval_fn``); 0 = only at the end."""
    checkpoint_every_grad_steps: int = 1000
    log_every_grad_steps: int = 25

    # --- Run --------------------------------------------------------------------------------------
    seed: int = 0
    device: str = "auto"
    """``auto`` = cuda if available, else cpu."""
    num_threads: int = 0
    """torch CPU threads during training; 0 keeps torch's default. On a CPU shared with other
    jobs, 1 thread can be several times faster than an oversubscribed default."""
    precision: str = "fp32"
    """``fp32``, or ``bf16``: the loss under bf16 autocast (CUDA only; weights and optimiser
    stay fp32). Not on the CPU: there it measured no faster and stalled learning."""
    tensorboard: bool = True
    progress: bool = True
    steps_this_run: int = 0
    """Stop (with a checkpoint) after this many steps of this invocation; 0 = run to ``steps``.
    For time-boxed jobs and the resume test; the LR schedule still spans ``steps``."""

    policy: VLAPolicyConfig = field(default_factory=VLAPolicyConfig)

    def __post_init__(self) -> None:
        if isinstance(self.policy, dict):
            self.policy = VLAPolicyConfig(**self.policy)
        for name in ("steps", "batch_size", "log_every_grad_steps", "val_every_grad_steps",
                     "checkpoint_every_grad_steps", "val_max_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every_grad_steps", "shift_pad", "num_threads",
                     "steps_this_run", "scene_batch"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.instruction_aug < 0:
            raise ValueError(f"instruction_aug must be >= 0, got {self.instruction_aug}")
        if not 0.0 <= self.instruction_aug_prob <= 1.0:
            raise ValueError(f"instruction_aug_prob must be in [0, 1], got "
                             f"{self.instruction_aug_prob}")
        if self.aux_weight < 0:
            raise ValueError(f"aux_weight must be >= 0, got {self.aux_weight}")
        if self.ground_weight < 0:
            raise ValueError(f"ground_weight must be >= 0, got {self.ground_weight}")
        if not 0.0 <= self.color_jitter < 1.0:
            raise ValueError(f"color_jitter must be in [0, 1), got {self.color_jitter}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if not 0 <= self.weight_decay < math.inf:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0 <= self.grad_clip < math.inf:
            raise ValueError(f"grad_clip must be a finite number >= 0 (0 = off), got "
                             f"{self.grad_clip}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


@dataclass
class DAggerConfig:
    """DAgger rounds on top of behaviour cloning (the nested ``bc`` config)."""

    rounds: int = 5
    """Rollout + retraining rounds (may be raised when resuming; 0: BC only)."""
    episodes_per_round: int = 20
    """Learner rollouts appended to the dataset per round (all kept, failures included: the
    labels are right whatever the outcome)."""
    beta0: float = 0.5
    """Probability that the expert executes, in round 0 (0 = the learner drives alone)."""
    beta_decay: float = 0.5
    """beta_i = beta0 * beta_decay**i."""
    mixing: str = "step"
    """``step``: who acts is drawn every step; ``episode``: once per episode."""
    round_steps: int = 1000
    """BC gradient steps per round, warm-started from the previous policy (fresh optimiser and
    warm-up + cosine LR over these steps). The initial policy gets ``bc.steps``."""
    warm_start: bool = True
    """False: every round retrains from scratch for ``bc.steps`` (the paper's variant; slower)."""
    workers: int = 2
    """Rollout workers (each its own env and policy copy, cores // workers torch threads)."""
    backend: str = "process"
    """Where rollouts run: ``process`` (spawned processes) or ``ray`` (Ray actors).
    Either pool starts once for the whole run (``pip install 'vla-sim[ray]'`` for Ray)."""
    ray_address: str = ""
    """Ray cluster to join (``host:port``, ``auto``); empty: start a local Ray."""
    seed: int = DAGGER_BASE_SEED
    """Rollout j of round i uses env seed ``episode_seed(seed, i * episodes_per_round + j)``."""
    env: str = ""
    """Env of the rollouts; empty = the one the demonstrations were collected in."""
    randomization: str = ""
    """Randomization level of the rollouts; empty = the demonstrations' level."""
    init_policy: str = ""
    """Start from this checkpoint (a folder with model.safetensors, or a BC run with last/)
    instead of training policy_0; its architecture must be ``bc.policy``."""
    scene_frames: int = 0
    """Labelled frames without actions (vla_sim.data.scene_frames: fresh scenes of the
    rollouts' env, the gripper teleported to ``scene_views`` random places each) rendered once
    before the first BC (or handed in: the quickstart renders them for its BC stage) and given
    to every BC run (``bc.scene_batch`` per step, for the goal-state and grounding losses).
    0 = none."""
    scene_views: int = 4
    """Gripper places per scene of the scene frames."""
    scene_randomization: str = ""
    """Randomization level (or YAML file of RandomizationConfig fields) of the scene frames;
    empty = the rollouts'. Harder scenes than the demonstrations' (``medium``: textured
    tables) teach perception to look past what the demonstrations never show, at the cost of
    rendering only (no expert, no episode)."""
    task_weights: dict[str, float] = field(default_factory=dict)
    """Multi-task rollouts: each task's relative share of a round (task name -> weight; a
    task not named keeps weight 1, 0 leaves it out). Empty: every seed draws its own task.
    The counts are exact, in a seeded order, e.g. ``task_weights.stack=2``."""
    bc: BCConfig = field(default_factory=BCConfig)

    def __post_init__(self) -> None:
        if isinstance(self.bc, dict):
            self.bc = BCConfig(**self.bc)
        if self.rounds < 0:
            raise ValueError(f"rounds must be >= 0 (0: BC only), got {self.rounds}")
        for name in ("episodes_per_round", "round_steps", "workers", "scene_views"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("beta0", "beta_decay"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.scene_frames < 0:
            raise ValueError(f"scene_frames must be >= 0 (0: none), got {self.scene_frames}")
        if self.scene_randomization:
            from vla_sim.randomization.config import resolve_randomization

            try:
                resolve_randomization(self.scene_randomization)
            except (ValueError, TypeError, OSError) as exc:
                raise ValueError(f"scene_randomization: {exc}") from None
        if self.mixing not in MIXING:
            raise ValueError(f"mixing must be one of {MIXING}, got {self.mixing!r}")
        self.task_weights = {str(k): float(v) for k, v in dict(self.task_weights).items()}
        for task, weight in self.task_weights.items():
            if task not in EPISODE_STEPS:
                raise ValueError(f"task_weights.{task}: unknown task; tasks are "
                                 f"{sorted(EPISODE_STEPS)}")
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"task_weights.{task} must be finite and >= 0, got {weight}")
        check_backend(self.backend, self.ray_address)
        if self.bc.steps_this_run:
            raise ValueError(f"bc.steps_this_run must be 0 for DAgger (a round's BC run must "
                             f"finish before the next rollouts), got {self.bc.steps_this_run}")
        if self.seed < 0 or self.seed == EVAL_BASE_SEED:
            raise ValueError(f"seed must be >= 0 and not the evaluation base seed "
                             f"{EVAL_BASE_SEED}, got {self.seed}")

    def scene_settings(self, settings: CollectConfig) -> CollectConfig:
        """The collection settings the scene frames are rendered with: ``settings`` at
        ``scene_randomization`` when set, else unchanged."""
        return replace(settings, randomization=self.scene_randomization or settings.randomization)

    def check_scene_frames(self) -> None:
        """Scene frames need a loss to train and room in the batch. Checked when DAgger starts
        (and by the quickstart once its ``bc`` section is copied in), not at construction:
        the quickstart's ``dagger`` section is built before it gets its BC settings."""
        if self.scene_frames and self.bc.aux_weight <= 0 and self.bc.ground_weight <= 0:
            raise ValueError("scene_frames train only the goal-state and grounding losses: set "
                             "bc.aux_weight > 0 or bc.ground_weight > 0")
        if self.scene_frames and self.bc.scene_batch < 1:
            raise ValueError("scene_frames need bc.scene_batch >= 1 (frames per BC step)")

    def beta(self, round_index: int) -> float:
        """Probability that the expert executes in round ``round_index`` (0-based)."""
        return float(self.beta0 * self.beta_decay ** round_index)


@dataclass
class ContinualConfig:
    """Fine-tuning on a new task with replay of earlier tasks' demonstrations."""

    replay_size: int = 5000
    """Reservoir capacity, in demonstration steps of earlier tasks."""
    replay_ratio: float = 0.5
    """Fraction of every batch drawn from the replay buffer (0 = plain fine-tuning)."""
    lr_scale: float = 0.3
    """Fine-tuning peak LR = ``lr_scale * bc.lr`` (lower than training from scratch)."""
    steps: int = 1000
    seed: int = 0
    renormalize: bool = True
    """Re-fit the normalisation statistics on old + new data, re-parameterising the layers so
    the policy computes exactly the same actions (see :func:`renormalize_policy`)."""
    bc: BCConfig = field(default_factory=BCConfig)
    """Batch size, augmentation, optimiser settings (``bc.steps`` and ``bc.lr`` are overridden
    by ``steps`` and ``lr_scale``)."""

    def __post_init__(self) -> None:
        if isinstance(self.bc, dict):
            self.bc = BCConfig(**self.bc)
        if self.replay_size < 1:
            raise ValueError(f"replay_size must be >= 1, got {self.replay_size}")
        if not 0.0 <= self.replay_ratio < 1.0:
            raise ValueError(f"replay_ratio must be in [0, 1), got {self.replay_ratio}")
        if not 0.0 < self.lr_scale <= 1.0:
            raise ValueError(f"lr_scale must be in (0, 1], got {self.lr_scale}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


@dataclass
class VLPretrainConfig:
    """Contrastive (frame, text) pre-training of the policy's vision encoder."""

    # --- Data ---------------------------------------------------------------------------------
    text: str = "instruction"
    """Text paired with each frame: ``instruction``, ``description`` (objects in the scene,
    from the episode's randomization record) or ``both`` (each pair draws one at random)."""
    camera: str = "front"
    """Which camera's encoder is pre-trained."""
    val_fraction: float = 0.2
    """Whole episodes held out for the zero-shot retrieval accuracy."""
    retrieval_k: int = 4
    """Candidate texts per retrieval query (chance = 1/K)."""

    # --- Model --------------------------------------------------------------------------------
    proj_dim: int = 128
    init_temperature: float = 0.07
    """CLIP's initial temperature; ``learn_temperature`` trains log(1/T), capped at 100 like CLIP."""
    learn_temperature: bool = True
    max_logit_scale: float = 100.0

    # --- Optimisation -------------------------------------------------------------------------
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    shift_pad: int = 4
    color_jitter: float = 0.1
    seed: int = 0
    device: str = "auto"
    num_threads: int = 0
    """torch CPU threads; 0 keeps torch's default."""

    policy: VLAPolicyConfig = field(default_factory=VLAPolicyConfig)
    """The policy architecture whose vision encoder is pre-trained."""

    def __post_init__(self) -> None:
        if isinstance(self.policy, dict):
            self.policy = VLAPolicyConfig(**self.policy)
        if self.text not in TEXT_SOURCES:
            raise ValueError(f"text must be one of {TEXT_SOURCES}, got {self.text!r}")
        if self.camera not in self.policy.cameras:
            raise ValueError(f"camera {self.camera!r} is not among policy.cameras {self.policy.cameras}")
        if self.retrieval_k < 2:
            raise ValueError(f"retrieval_k must be >= 2, got {self.retrieval_k}")
        if not 0 < self.init_temperature <= 1:
            raise ValueError(f"init_temperature must be in (0, 1], got {self.init_temperature}")
        for name in ("steps", "batch_size", "proj_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


# ------------------------------------------------------------------------------------- loss


@dataclass
class RLConfig:
    """What PPO and REINFORCE share: the training env, the warm start and its forgetting guards,
    evaluation, checkpoints and logging. Each trainer's config adds its own algorithm fields."""

    # --- Environment ------------------------------------------------------------------------
    env_id: str = "vla_sim/PickPlace-v0"
    robot: str = "panda"
    randomization: str = "medium"
    reward: str = "language"
    """``sparse`` | ``dense`` | ``language`` | ``mixed`` (see LanguageRewardWrapper)."""
    n_envs: int = 1
    """Environments stepped side by side."""
    backend: str = "process"
    """Where the envs run: ``process`` or ``ray`` (a Ray actor per env; PPO only).
    ``process``: this process, or a process per env when n_envs > 1. ``ray`` needs
    ``pip install 'vla-sim[ray]'``."""
    ray_address: str = ""
    """Ray cluster to join (``host:port``, ``auto``); empty: start a local Ray."""
    max_episode_steps: int | None = None
    text_encoder: str = "default"
    """Text encoder for observations and the language reward; ``hashing`` for smoke tests."""

    # --- Optimisation -------------------------------------------------------------------------
    total_env_steps: int = 20_000
    """Env steps in total."""
    lr: float = 3e-5
    """Ten times below SB3's 3e-4: the network starts from a BC solution. At 1e-4 the KL to
    the BC policy grew from 0.1 to 10 within 8k PickPlace steps (measured)."""
    gamma: float = 0.99
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5

    # --- Warm start and forgetting guards ------------------------------------------------------
    init_log_std: float | None = -1.25
    """Log-std of the Gaussian head in normalised action units at the start (None keeps the
    checkpoint's); std = exp(-1.25) * action_std ~ 0.29 action_std."""
    value_hidden: int = 256
    """Critic width (``VLAPolicyConfig.value_hidden``); a BC checkpoint's linear critic is
    replaced by a fresh two-layer MLP. With the linear one, explained variance stayed below 0
    for 24k PickPlace steps (measured), so advantages were noise."""
    value_lr: float = 1e-3
    """Learning rate of the critic (its own Adam parameter group). It starts untrained, so it
    must learn far faster than the BC-initialised actor (``lr``)."""
    log_std_lr: float | None = None
    """Learning rate of the Gaussian head's log-std (its own Adam parameter group); None: it
    trains at ``lr`` with the actor, where Adam moves it by at most about ``lr`` per step.
    Measured on Reach (30 PPO updates): the std stayed at 0.112 at lr 3e-5 and also at
    log_std_lr 1e-2, because the full KL anchor to BC (``bc_anchor="kl"``) covers the std too;
    with ``bc_anchor="mean"`` it moved 0.112 -> 0.121 in 40 updates."""
    freeze_vision: bool = False
    """Keep the camera encoders at their BC weights and run them without autograd: RL then
    adapts language, state, trunk and heads only (fewer parameters for a noisy policy gradient
    to move), and an update never back-propagates through the convs (cheaper updates)."""
    critic_detach: bool = True
    """The value head reads detached features for the whole run: value-loss gradients (large
    and noisy while the critic is fresh) never move the shared, BC-trained encoder. (The
    asymmetric critic never reads the actor's graph, whatever this says.)"""
    asymmetric_critic: bool = True
    """The critic reads the env's privileged state (goal state, object and end-effector poses,
    holding, success, task: vla_sim.envs.wrappers.privileged_state) and the proprioception
    through its own LayerNorm MLP, never the actor's graph; the actor still reads only images,
    proprioception and the instruction. False: the critic reads the actor's trunk features.
    On by default: with the actor held fixed (value warm-up only; Reach and PickPlace, dense
    reward, 256-step rollouts, two seeds each) its explained variance was 0.5-0.9 after the
    first rollout and 0.65-0.96 after that; the symmetric critic's stayed in -1.7..0.6."""
    bc_coef: float = 1.0
    """Weight of the pull toward the frozen BC policy, KL(pi || pi_BC) or its mean term (see
    ``bc_anchor`` and ``bc_decay_env_steps``)."""
    bc_decay_env_steps: int = 0
    """Env steps over which the KL weight decays linearly to 0; 0 = it never decays. Measured on
    PickPlace (lr 5e-5): with the weight decayed to 0 by 60k steps, success fell from 26% to 2%
    by 162k steps; the policy gradient alone drifts away from the demonstrations."""
    bc_anchor: str = "kl"
    """What ``bc_coef`` weighs: ``kl`` (the full KL, which holds the std at BC's too) or
    ``mean`` (the KL's mean term only: the actions stay near BC's, the exploration std is
    the policy gradient's and ``log_std_lr``'s). Logged as ``train/kl_to_bc`` either way."""

    # --- Evaluation, logging, checkpoints ------------------------------------------------------
    eval_every_env_steps: int = 0
    """Env steps between success evaluations (best/ is the best one); 0 = only at start/end."""
    eval_episodes: int = 10
    checkpoint_every_env_steps: int = 2048
    """Env steps between resumable checkpoints (``checkpoints/last_state``)."""
    tensorboard: bool = True
    progress: bool = True
    seed: int = 0
    device: str = "cpu"
    num_threads: int = 0
    """torch CPU threads in the learner; 0 keeps torch's default."""

    policy: dict = field(default_factory=dict)
    """VLAPolicyConfig fields for a fresh policy when no ``--init`` checkpoint is given."""

    def __post_init__(self) -> None:
        if self.reward not in REWARD_MODES:
            raise ValueError(f"reward must be one of {REWARD_MODES}, got {self.reward!r}")
        check_backend(self.backend, self.ray_address)
        if self.total_env_steps < 0:
            raise ValueError(f"total_env_steps must be >= 0, got {self.total_env_steps}")
        for name in ("n_envs", "eval_episodes", "checkpoint_every_env_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("bc_decay_env_steps", "eval_every_env_steps", "num_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.bc_coef < 0:
            raise ValueError(f"bc_coef must be >= 0, got {self.bc_coef}")
        if self.bc_anchor not in BC_ANCHORS:
            raise ValueError(f"bc_anchor must be one of {BC_ANCHORS}, got {self.bc_anchor!r}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.value_hidden < 0:
            raise ValueError(f"value_hidden must be >= 0, got {self.value_hidden}")
        if self.log_std_lr is not None and not 0 < self.log_std_lr < math.inf:
            raise ValueError(f"log_std_lr must be a finite number > 0 (or null), got "
                             f"{self.log_std_lr}")
        for name in ("lr", "value_lr"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 (or null), got "
                             f"{self.max_episode_steps}")
        for name in ("ent_coef", "vf_coef", "max_grad_norm"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0, got "
                                 f"{getattr(self, name)}")


@dataclass
class PPOConfig(RLConfig):
    """PPO fine-tuning from a BC warm start (SB3's PPO with the guards of :class:`RLConfig`)."""

    n_steps: int = 256
    """Env steps per env per rollout."""
    batch_size: int = 64
    n_epochs: int = 4
    gae_lambda: float = 0.95
    clip_range: float = 0.1
    target_kl: float | None = 0.05
    normalize_reward: bool = True
    """Scale rewards by a running std of the discounted return (SB3 ``VecNormalize``, rewards
    only), so value targets are O(1) whatever the reward mode."""
    value_warmup_rollouts: int = 2
    """First rollouts train only the value head (detached features), so early advantages are
    not noise from an untrained critic."""
    sil_coef: float = 0.0
    """Self-imitation (Oh et al., 2018, with success as the filter): after each PPO update,
    ``sil_batches`` minibatches maximise ``sil_coef * log pi(a|s)`` over the executed actions of
    the policy's own *successful* training episodes. Policy-gradient alone spreads a rare
    success over many noisy per-step advantages; this replays it. 0 = off."""
    sil_batches: int = 8
    """Self-imitation minibatches (``batch_size`` steps each) per PPO update."""
    sil_buffer_steps: int = 10_000
    """Steps of successful episodes kept for self-imitation (oldest dropped first; not part of
    the resumable checkpoint, so a resumed run refills it)."""
    max_minutes: float = 0.0
    """Wall-clock budget of this run's training in minutes (checked every env step; the final
    evaluation and save follow); 0 = none, ``total_env_steps`` alone ends the run."""
    perception_weight: float = 0.0
    """Weight of the policy's own perception losses (goal-state and grounding heads, as in BC)
    on the frames of every PPO minibatch, labelled from the training env's privileged state:
    the fine-tuning envs' scenes (e.g. ``medium`` randomization: textures, distractors, other
    cameras) are ones BC's perception never saw, and the policy gradient alone is a slow
    teacher of where things are. Needs ``asymmetric_critic`` (the envs then carry the labels)
    and a policy trained with those heads. 0 = off."""
    perception_lr: float | None = None
    """Learning rate of the perception modules (camera encoders, the language-over-space read,
    the goal-state and grounding heads; their own Adam group, with ``lr``'s schedule) while
    ``perception_weight`` > 0. PPO's ``lr`` is kept small so the action head stays near BC;
    at that rate the perception loss on new scenes falls slowly (PickPlace at ``medium``,
    60 minutes at lr 1e-4: 1.32 -> 1.12, against 0.59 for the BC policy on its own scenes).
    None = ``lr``."""
    scene_frames: int = 0
    """Labelled frames rendered at this run's randomization before PPO starts (fresh scenes of
    the train split, the gripper teleported anywhere; rendering only, no expert: see
    :mod:`vla_sim.data.scene_frames`); ``scene_batch`` of them per minibatch add their
    perception losses, weighted by ``perception_weight``. The rollouts show a new scene only
    every episode (~1 per 80 env steps); scene frames show thousands within a minute of
    rendering, which is where BC's perception learned what it knows. Saved in the run folder
    (a resumed run reads them back); the rendering counts in ``max_minutes``. 0 = off."""
    scene_batch: int = 16
    """Scene frames per PPO minibatch (with ``scene_frames``)."""
    scene_views: int = 4
    """Gripper places (frames) per rendered scene."""
    pg_coef: float = 1.0
    """Weight of PPO's clipped policy-gradient term. 0 is an ablation, not a learner: the run
    then trains only what the other terms train (the critic, the pull toward BC, the perception
    loss), on the same rollouts, so a gain can be split between RL and the rest."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.pg_coef < math.inf:
            raise ValueError(f"pg_coef must be a finite number >= 0, got {self.pg_coef}")
        if not 0 <= self.perception_weight < math.inf:
            raise ValueError(f"perception_weight must be a finite number >= 0, got "
                             f"{self.perception_weight}")
        if self.perception_lr is not None:
            if not 0 < self.perception_lr < math.inf:
                raise ValueError(f"perception_lr must be a finite number > 0 (or null), got "
                                 f"{self.perception_lr}")
            if self.perception_weight <= 0:
                raise ValueError("perception_lr is the rate of the perception loss's modules: "
                                 "it needs perception_weight > 0")
        if self.scene_frames < 0:
            raise ValueError(f"scene_frames must be >= 0, got {self.scene_frames}")
        if self.scene_frames > 0:
            if self.perception_weight <= 0:
                raise ValueError("scene_frames train the perception loss: they need "
                                 "perception_weight > 0")
            if self.scene_batch < 1 or self.scene_views < 1:
                raise ValueError(f"scene_batch and scene_views must be >= 1, got "
                                 f"{self.scene_batch} and {self.scene_views}")
        if self.perception_weight > 0 and not self.asymmetric_critic:
            raise ValueError("perception_weight > 0 needs asymmetric_critic=true: the labels "
                             "come from the envs' privileged state, which only it adds")
        for name in ("n_steps", "batch_size", "n_epochs", "sil_batches", "sil_buffer_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.value_warmup_rollouts < 0:
            raise ValueError(f"value_warmup_rollouts must be >= 0, got "
                             f"{self.value_warmup_rollouts}")
        if self.sil_coef < 0:
            raise ValueError(f"sil_coef must be >= 0, got {self.sil_coef}")
        if not self.max_minutes >= 0:
            raise ValueError(f"max_minutes must be >= 0, got {self.max_minutes}")


@dataclass
class ReinforceConfig(RLConfig):
    """REINFORCE / actor-critic fine-tuning from a BC warm start, whole episodes per batch."""

    n_envs: int = 4
    """Episodes per batch, run side by side in a gymnasium vector env."""
    vector: str = "sync"
    """``sync`` (SyncVectorEnv, one process) or ``async`` (AsyncVectorEnv, a process per env)."""
    baseline: bool = True
    """Subtract the value head's V(s) from the returns (the actor-critic variant)."""
    normalize_advantages: bool = True
    value_warmup_batches: int = 2
    """First batches train only the value head (detached features)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vector not in VECTORS:
            raise ValueError(f"vector must be one of {VECTORS}, got {self.vector!r}")
        if self.backend != "process":
            raise ValueError(f"backend {self.backend!r}: REINFORCE runs its envs in a gymnasium "
                             "vector env (vector sync|async); backend ray is for PPO")
        if self.value_warmup_batches < 0:
            raise ValueError(f"value_warmup_batches must be >= 0, got {self.value_warmup_batches}")


@dataclass
class RLPDConfig(RLConfig):
    """Off-policy fine-tuning with demonstrations (RLPD / IBRL style, agents/training/rlpd.py):
    SAC on the frozen BC encoder's features, a LayerNorm Q ensemble with a min over a random
    pair, half of every batch from the replayed demonstrations, a BC term toward their actions.

    Inherited fields it reads differently: ``value_hidden`` is each Q-network's width;
    ``bc_coef`` weighs the squared error (normalised action units) between the actor's mean and
    the demonstrations' actions, on the demonstration half of the batch, against the SAC term
    divided by max(1, the batch's mean |Q|) (TD3+BC's normalisation), decaying over
    ``bc_decay_env_steps`` like the KL of PPO; ``lr`` is the actor's rate, ``value_lr`` the
    critics'. Not read: ``ent_coef`` (the temperature is tuned), ``vf_coef``,
    ``max_grad_norm``, ``critic_detach``, ``freeze_vision`` (the whole encoder is frozen)."""

    # --- Demonstrations -------------------------------------------------------------------------
    demos: str = ""
    """Dataset folder of the demonstrations (the BC dataset, vla-sim collect or DAgger output).
    Each episode is replayed in the training env from its recorded seed, randomization sample
    and executed actions, so its rewards follow this run's reward mode and it carries the
    privileged state; episodes that do not reproduce the recorded states are dropped."""
    demo_episodes: int = 0
    """Replay only the first N episodes; 0 = all."""
    demo_fraction: float = 0.5
    """Fraction of every batch drawn from the demonstrations (RLPD's symmetric sampling: 0.5);
    0 = plain SAC from the BC policy, no demonstrations needed."""

    # --- Replay and updates ---------------------------------------------------------------------
    lr: float = 1e-4
    """Actor learning rate (Adam). The actor starts at the BC solution, so below SAC's 3e-4."""
    value_lr: float = 3e-4
    """Q-ensemble learning rate (Adam; RLPD's)."""
    bc_coef: float = 0.4
    """Weight of the BC term (see the class docstring): TD3+BC's alpha = 2.5 is a weight of
    1 / 2.5 on the squared error against the normalised Q term."""
    checkpoint_every_env_steps: int = 10_000
    """Env steps between resumable checkpoints; each writes the replay buffers too (about
    2.3 kB per transition with the default 256-d features), so less often than PPO's."""
    buffer_size: int = 200_000
    """Online transitions kept (oldest overwritten first)."""
    batch_size: int = 256
    utd_ratio: int = 2
    """Critic gradient updates per env step (RLPD's G is 20, on a GPU). The updates set the
    CPU cost: one env step's G=2 critic updates and actor update took about 25 ms at the
    defaults (1 thread of a shared 2-core CPU, 256-d features, batch 256, measured); G=4
    about 45 ms."""
    ensemble_size: int = 4
    """Q-networks in the ensemble (RLPD's E is 10: about 45 ms per env step at G=2, measured)."""
    value_hidden: int = 128
    """Width of each Q-network (RLPD's 256: about 40-60 ms per env step at G=2, measured)."""
    critic_subset: int = 2
    """The TD target takes the min over this many ensemble members drawn at random (REDQ)."""
    tau: float = 0.005
    """Polyak rate of the target Q-networks."""
    actor_layers: int = 1
    """Trailing trunk layers the actor trains besides the Gaussian head; the encoder's stored
    features are their input. 0 = the head alone (a linear map of the BC features)."""
    init_temperature: float = 0.01
    """Initial entropy temperature alpha (then tuned toward ``target_entropy``)."""
    temperature_lr: float = 3e-4
    target_entropy: float | None = None
    """Entropy the temperature aims for, in nats of the Gaussian before clipping; None =
    -action_dim (SAC's)."""
    backup_entropy: bool = True
    """The TD target includes the next action's entropy bonus (SAC's soft backup)."""
    learning_starts: int = 1000
    """Online transitions collected (by the BC actor, sampling) before the first update."""
    critic_warmup_env_steps: int = 5000
    """Env steps during which only the critics and not the actor learn, so the actor's first
    gradient comes from critics that have seen the BC policy's own outcomes."""
    max_minutes: float = 0.0
    """Wall-clock budget of this run's training in minutes, from its start (the replay of the
    demonstrations counts; checked every env step; the final evaluation and save follow);
    0 = none, ``total_env_steps`` alone ends the run."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backend != "process":
            raise ValueError(f"backend {self.backend!r}: RLPD steps its envs in SB3 vector envs "
                             "(backend process); backend ray is for PPO")
        if self.bc_anchor != "kl":
            raise ValueError(f"bc_anchor {self.bc_anchor!r}: RLPD's BC term is a squared error "
                             "on the actor's action (TD3+BC), there is no KL to take apart; "
                             "bc_anchor is for PPO and REINFORCE")
        for name in ("buffer_size", "batch_size", "utd_ratio", "ensemble_size", "critic_subset",
                     "value_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("demo_episodes", "actor_layers", "learning_starts", "critic_warmup_env_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.critic_subset > self.ensemble_size:
            raise ValueError(f"critic_subset must be <= ensemble_size ({self.ensemble_size}), "
                             f"got {self.critic_subset}")
        if not 0.0 <= self.demo_fraction < 1.0:
            raise ValueError(f"demo_fraction must be in [0, 1), got {self.demo_fraction}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        for name in ("init_temperature", "temperature_lr"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)}")
        if self.target_entropy is not None and not math.isfinite(self.target_entropy):
            raise ValueError(f"target_entropy must be a finite number (or null), got "
                             f"{self.target_entropy}")
        if not 0 <= self.max_minutes < math.inf:
            raise ValueError(f"max_minutes must be a finite number >= 0, got {self.max_minutes}")
