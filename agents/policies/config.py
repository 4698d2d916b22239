"""Configuration of the VLA policy: one dataclass, grouped by concern, validated on creation."""

from __future__ import annotations

from dataclasses import dataclass, field

from vla_sim.envs.cameras import CAMERA_KEYS

VISION_ENCODERS = ("cnn", "resnet")
ACTION_HEADS = ("gaussian", "discrete", "flow")


# Options removed after they measured worse (README, issue notes), with the value that means
# "not used": a checkpoint that records exactly these still loads; one that used them is refused.
RETIRED_FIELDS = {"pool": "flatten", "keypoints": 32, "coord_conv": False,
                  "temporal_ensemble": False, "spatial_offsets": False}
RETIRED_WHY = {"pool": "spatial-softmax pooling (Reach BC 4% vs 54% with flatten)",
               "coord_conv": "CoordConv (measured with spatial softmax, no better)",
               "temporal_ensemble": "temporal ensembling (PickPlace BC 4% vs 24% without)",
               "spatial_offsets": "sub-cell localisation offsets (Push 52% / 34% vs 46% / 45% "
                                  "without, Reach 90% / 91% vs 93% / 92%)"}


def upgrade_policy_dict(data: dict) -> dict:
    """A saved VLAPolicyConfig dict without the retired fields; raises ValueError naming the
    option when the checkpoint used one (its weights need code that no longer exists)."""
    data = dict(data)
    for name, unused in RETIRED_FIELDS.items():
        if name in data:
            value = data.pop(name)
            if value != unused and name in RETIRED_WHY:
                raise ValueError(f"this checkpoint uses {name}={value!r}: {RETIRED_WHY[name]} was "
                                 "removed; retrain without it")
    return data


@dataclass
class VLAPolicyConfig:
    """Vision-language-action policy: conv image encoder with language FiLM, state MLP, MLP trunk,
    Gaussian, discretised or flow-matching action head and a value head."""

    # --- Input / output structure -------------------------------------------------------------
    image_size: int = 64
    """Square policy image side in pixels (the env's ``image_size``)."""
    cameras: list[str] = field(default_factory=lambda: ["front"])
    """Cameras fed to the policy, each with its own encoder: ``front`` -> obs ``image``,
    ``wrist`` -> obs ``wrist_image``."""
    state_dim: int = 22
    """Proprioception size: ee_pos 3 | ee_quat 4 | gripper 1 | joint_pos 7 | joint_vel 7."""
    action_dim: int = 4
    """EE delta xyz + gripper, each in [-1, 1]."""
    text_dim: int = 384
    """Size of the text encoder's vectors (all-MiniLM-L6-v2: 384)."""
    max_tokens: int = 16
    """Instruction token positions the policy reads (must match the InstructionEmbedding wrapper)."""
    text_encoder: str = "default"
    """Text encoder used by ``act()`` on raw observations (see vla_sim.language.encoder)."""

    # --- Vision --------------------------------------------------------------------------------
    vision: str = "cnn"
    """``cnn``: one stride-2 3x3 conv per stage; ``resnet``: each stage adds a residual block."""
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    """Conv channels per stage; each stage halves the resolution (64 -> 8 with three stages).
    [16, 32, 64] trains ~2.8x faster than [32, 64, 128] on a 2-core CPU (measured)."""
    image_features: int = 256
    """Per-camera feature size after the pooled conv map's linear layer."""

    # --- Language ------------------------------------------------------------------------------
    use_tokens: bool = True
    """Attend over per-token states with learned queries. Mean-pooled MiniLM vectors confuse
    objects (DESIGN.md), so tokens are the default; ``False`` uses the pooled vector only."""
    num_queries: int = 4
    """Learned attention queries over the instruction tokens (each can pick out a slot)."""
    attn_dim: int = 128
    """Projection size of tokens and queries in the attention pooling."""
    attn_heads: int = 4
    lang_features: int = 128
    """Size of the language vector that conditions vision (FiLM) and enters the trunk."""
    film: bool = True
    """Modulate every conv stage with per-channel scale/shift from language (RT-1 style)."""
    spatial_lang: bool = False
    """Language as a spatial query (LAVA-style), besides FiLM: ``spatial_queries`` slot queries
    read the per-token states, then per camera attend over the last conv map's cells (with 2-D
    sinusoidal positions); the attended cell features and each query's soft-argmax (expected
    x, y) enter the trunk. Needs ``use_tokens``. Off until measured better (see the issue)."""
    spatial_queries: int = 4
    """Slot queries of ``spatial_lang``; the first three are the ones grounding supervises
    (object, destination, current target), so at least 3."""
    spatial_dim: int = 32
    """Size of the attention-weighted cell features each spatial query contributes per camera."""

    # --- Fusion and heads ----------------------------------------------------------------------
    state_hidden: int = 64
    trunk_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Trunk MLP sizes; the last one is the features size that the action and value heads read."""
    head: str = "gaussian"
    """``gaussian``: mean + state-independent learned log-std; ``discrete``: ``num_bins``
    uniform bins per action dimension over [-1, 1] (RT-2 style), cross-entropy in BC;
    ``flow``: a conditional flow-matching head (pi0's action expert, in small): an MLP velocity
    field over normalised actions, integrated from noise in ``flow_steps`` Euler steps, so one
    state can map to several distinct actions instead of their average (BC only)."""
    num_bins: int = 256
    flow_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden sizes of the flow head's velocity MLP (it reads the noisy action, the flow time
    and the trunk features)."""
    flow_steps: int = 10
    """Euler steps from noise to action when the flow head acts."""
    flow_samples: int = 4
    """(noise, time) draws per training sample in each BC step: the head is cheap next to the
    extractor, whose one pass they share."""
    action_chunk: int = 1
    """Actions predicted per step (ACT-style chunking, gaussian or flow head): BC learns the next
    ``action_chunk`` expert actions; the policy acts with the current one unless
    ``action_steps > 1`` (PPO and REINFORCE use only that one). 1 = single-step."""
    action_steps: int = 1
    """Actions of each planned chunk executed before the policy looks again (receding horizon,
    as Diffusion Policy's ``n_action_steps``): it commits to one plan for that many steps
    instead of choosing afresh each step, and reacts later. 1 = re-plan every step."""
    init_log_std: float = -1.0
    """Initial log-std of the Gaussian head in normalised action units (std 0.37); BC leaves
    it alone, PPO/REINFORCE learn it."""
    value_head: bool = True
    """Build the critic on the trunk features for actor-critic fine-tuning."""
    value_hidden: int = 0
    """Hidden width of the critic: 0 = one linear layer; > 0 = Linear-Tanh-Linear-Tanh-Linear.
    RL fine-tuning sets it (``PPOConfig.value_hidden``): a linear critic on BC features
    explained none of the return's variance on PickPlace (measured)."""
    critic_privileged_dim: int = 0
    """> 0: an asymmetric critic. It reads ``obs["privileged"]`` (this many values: the env's
    privileged state from vla_sim.envs.wrappers.privileged_state) and the normalised
    proprioception through a LayerNorm MLP of ``value_hidden`` units (256 when 0), never the
    actor's graph; the actor never reads the privileged values. RL sets it
    (``RLConfig.asymmetric_critic``). 0 = the critic reads the actor's trunk features."""
    critic_features: bool = False
    """The asymmetric critic also reads the actor's trunk features (detached)."""
    aux_dim: int = 0
    """Size of an auxiliary regression head on the trunk features, trained by BC to predict the
    first ``aux_dim`` values of the demonstration's goal state (``observation.environment_state``;
    BC sets 6: the instructed object's and destination's positions) when
    ``BCConfig.aux_weight > 0``. Never used to act. 0 = none."""
    grounding: bool = False
    """Build the grounding head that BC trains from the simulator's image-plane labels when
    ``BCConfig.ground_weight > 0`` (which sets it): per camera, where the instructed object, the
    destination and the current target are (the soft-argmax of the first spatial queries with
    ``spatial_lang``, else a linear head on the trunk features), and whether the gripper holds
    the object. Never used to act."""

    def __post_init__(self) -> None:
        self.cameras = list(self.cameras)
        self.channels = [int(c) for c in self.channels]
        self.trunk_hidden = [int(h) for h in self.trunk_hidden]
        self.flow_hidden = [int(h) for h in self.flow_hidden]
        if self.vision not in VISION_ENCODERS:
            raise ValueError(f"vision must be one of {VISION_ENCODERS}, got {self.vision!r}")
        if self.head not in ACTION_HEADS:
            raise ValueError(f"head must be one of {ACTION_HEADS}, got {self.head!r}")
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras must be a non-empty list without repeats, got {self.cameras}")
        bad = [c for c in self.cameras if c not in CAMERA_KEYS]
        if bad:
            raise ValueError(f"unknown cameras {bad}; known: {sorted(CAMERA_KEYS)}")
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive ints, got {self.channels}")
        if self.image_size < 2 ** len(self.channels) or self.image_size % 2 ** len(self.channels):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2**len(channels) = "
                f"{2 ** len(self.channels)} (each conv stage halves it)")
        if not self.trunk_hidden or min(self.trunk_hidden) < 1:
            raise ValueError(f"trunk_hidden must be non-empty positive ints, got {self.trunk_hidden}")
        for name in ("state_dim", "action_dim", "text_dim", "max_tokens", "image_features",
                     "num_queries", "attn_dim", "attn_heads", "lang_features", "state_hidden",
                     "spatial_queries", "spatial_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.attn_dim % self.attn_heads:
            raise ValueError(
                f"attn_dim ({self.attn_dim}) must be divisible by attn_heads ({self.attn_heads})")
        if not self.flow_hidden or min(self.flow_hidden) < 1:
            raise ValueError(f"flow_hidden must be non-empty positive ints, got {self.flow_hidden}")
        for name in ("flow_steps", "flow_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.action_chunk < 1:
            raise ValueError(f"action_chunk must be >= 1, got {self.action_chunk}")
        if self.action_chunk > 1 and self.head == "discrete":
            raise ValueError("action_chunk > 1 needs head='gaussian' or 'flow'")
        if not 1 <= self.action_steps <= self.action_chunk:
            raise ValueError(f"action_steps must be in 1..action_chunk ({self.action_chunk}), "
                             f"got {self.action_steps}")
        if self.aux_dim < 0:
            raise ValueError(f"aux_dim must be >= 0, got {self.aux_dim}")
        if self.value_hidden < 0:
            raise ValueError(f"value_hidden must be >= 0, got {self.value_hidden}")
        if self.critic_privileged_dim < 0:
            raise ValueError(f"critic_privileged_dim must be >= 0, got "
                             f"{self.critic_privileged_dim}")
        if self.critic_privileged_dim and not self.value_head:
            raise ValueError("critic_privileged_dim > 0 needs value_head=True")
        if self.spatial_lang and not self.use_tokens:
            raise ValueError("spatial_lang needs use_tokens=True (its queries read the "
                             "instruction's token states)")
        if self.spatial_lang and self.spatial_queries < 3:
            raise ValueError(f"spatial_queries must be >= 3 with spatial_lang (object, "
                             f"destination, current target), got {self.spatial_queries}")
        if self.num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {self.num_bins}")

    @property
    def image_keys(self) -> list[str]:
        """Observation keys of the configured cameras, in order."""
        return [CAMERA_KEYS[c] for c in self.cameras]

    @property
    def feature_map_side(self) -> int:
        """Side of the last conv map in cells (each stage halves the image)."""
        return self.image_size // 2 ** len(self.channels)

    @property
    def features_dim(self) -> int:
        return self.trunk_hidden[-1]


@dataclass
class ActionAEConfig:
    """Action-chunk autoencoder."""

    chunk: int = 4
    """Actions per chunk (H); 1 autoencodes single actions."""
    action_dim: int = 4
    latent_dim: int = 4
    """Latent size; the latent policy's head predicts this many numbers."""
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    val_fraction: float = 0.1
    seed: int = 0
    num_threads: int = 0
    """torch CPU threads; 0 keeps torch's default."""

    def __post_init__(self) -> None:
        self.hidden = [int(h) for h in self.hidden]
        for name in ("chunk", "action_dim", "latent_dim", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must be non-empty positive ints, got {self.hidden}")
