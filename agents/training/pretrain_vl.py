"""Vision-language pre-training (CLIP-style) of the policy's vision encoder.

On (frame, text) pairs from demonstrations, where the text is the episode's instruction or a
scene description built from its randomization record, we train

    image -> ConvEncoder (the policy's own, FiLM held at identity) -> Linear -> unit vector
    text  -> frozen sentence encoder (pooled)                       -> Linear -> unit vector

with the symmetric InfoNCE loss of CLIP (Radford et al. 2021) and a learned temperature:

    logits = exp(t) * I T^T;  loss = (CE(logits, y) + CE(logits^T, y)) / 2

Several frames of a batch often share a text. Those texts are merged into one column, so
image -> text is a plain cross-entropy over the distinct texts, and text -> image averages the
log-probability over every image of that text (both reduce to CLIP's loss when texts are all
different). Zero-shot retrieval: for a held-out frame, which of K candidate texts (the true one
and K-1 other distinct texts) is the most similar; chance is 1/K.

The trained ``vision`` weights have the same names and shapes as ``extractor.vision.<cam>`` of a
:class:`VLAPolicy`, so :func:`init_policy_vision` copies them into a policy before BC.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from vla_sim.agents.policies.vla import ConvEncoder, VLAPolicy
from vla_sim.config import config_from_dict, config_to_dict
from vla_sim.data.demos import DemoArrays, split_episodes
from vla_sim.utils.io import atomic_write_json

from . import distributed
from .bc import BCConfig, apply_augmentation, draw_augmentation
from .common import resolve_device
from .configs import TEXT_SOURCES, VLPretrainConfig
from .loop import SupervisedLoop, adamw

VL_WEIGHTS = "vl_model.safetensors"
VL_CONFIG = "vl_config.json"


def info_nce_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float,
                  text_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE.

    Args:
        image_emb: (B, P) image embeddings (normalised here).
        text_emb: (B, P) text embeddings of each image's text, row-aligned (normalised here).
        logit_scale: 1 / temperature (a scalar, not its log).
        text_ids: optional (B,) ids; rows with the same id share a text (one column, several
            positives; their ``text_emb`` rows must be equal). None: every row is its own text.
    """
    img = nn.functional.normalize(image_emb, dim=-1)
    txt = nn.functional.normalize(text_emb, dim=-1)
    if text_ids is None:
        text_ids = torch.arange(img.shape[0], device=img.device)
    uniq, col = torch.unique(text_ids, return_inverse=True)
    # One representative row per distinct text (rows sharing an id carry the same text).
    rep = torch.zeros(len(uniq), dtype=torch.long, device=img.device)
    rep.scatter_(0, col, torch.arange(len(col), device=img.device))
    logits = logit_scale * img @ txt[rep].T  # (B images, U texts)
    loss_i2t = nn.functional.cross_entropy(logits, col)
    log_p_t2i = logits.T.log_softmax(dim=-1)  # (U, B): each text over the images
    positives = (col[None, :] == torch.arange(len(uniq), device=img.device)[:, None]).float()
    loss_t2i = -((log_p_t2i * positives).sum(-1) / positives.sum(-1)).mean()
    return 0.5 * (loss_i2t + loss_t2i)


# ------------------------------------------------------------------------------------- model
class VisionLanguageModel(nn.Module):
    """The policy's ConvEncoder + image projection, a projection of frozen sentence vectors, and
    a learned logit scale."""

    def __init__(self, cfg: VLPretrainConfig):
        super().__init__()
        pc = cfg.policy
        self.vision = ConvEncoder(pc)
        self.lang_features = pc.lang_features
        self.image_proj = nn.Linear(pc.image_features, cfg.proj_dim)
        self.text_proj = nn.Linear(pc.text_dim, cfg.proj_dim)
        init = torch.tensor(math.log(1.0 / cfg.init_temperature))
        self.log_logit_scale = nn.Parameter(init, requires_grad=cfg.learn_temperature)
        self.max_log_scale = math.log(cfg.max_logit_scale)

    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.clamp(max=self.max_log_scale).exp()

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """Float (B,3,S,S) in [0,1] -> (B, proj_dim) unit vectors. Language input is zero: the
        FiLM layers stay at identity (they are not trained here)."""
        lang = image.new_zeros(image.shape[0], self.lang_features)
        return nn.functional.normalize(self.image_proj(self.vision(image, lang)), dim=-1)

    def encode_text(self, pooled: torch.Tensor) -> torch.Tensor:
        """(U, text_dim) frozen sentence vectors -> (U, proj_dim) unit vectors."""
        return nn.functional.normalize(self.text_proj(pooled), dim=-1)

    def trainable(self) -> list[nn.Parameter]:
        """Everything except the FiLM layers (kept at identity for the policy)."""
        return [p for n, p in self.named_parameters() if p.requires_grad and ".film." not in f".{n}"]


# -------------------------------------------------------------------------------------- data
@dataclass
class VLPairs:
    """Frames with text ids: images (N,S,S,3) uint8, texts (distinct strings), pair_texts: for
    each frame, the candidate text ids it may be paired with (one or two), episode_index (N,)."""

    images: np.ndarray
    texts: list[str]
    pair_texts: list[tuple[int, ...]]
    episode_index: np.ndarray

    @property
    def primary(self) -> np.ndarray:
        """(N,) the first text id of each frame (used for retrieval)."""
        return np.array([p[0] for p in self.pair_texts], np.int64)


def describe_scene(randomization: dict | None) -> str:
    """A plain scene description from an episode's randomization record: "a table with a red
    cube, a blue bowl and a green sphere" (objects in recorded order)."""
    objects = (randomization or {}).get("objects") or []
    items = [f"a {o.get('color', '')} {o.get('shape', '')}".replace("  ", " ").strip()
             for o in objects if o.get("color") or o.get("shape")]
    if not items:
        return "an empty table"
    listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    return "a table with " + listed


def make_pairs(demos: DemoArrays, camera_key: str, text: str = "instruction",
               descriptions: dict[int, str] | None = None) -> VLPairs:
    """(frame, text) pairs from demonstrations. ``descriptions``: episode -> scene description
    (needed for ``text`` = ``description`` / ``both``)."""
    if camera_key not in demos.images:
        raise ValueError(f"no {camera_key!r} images in the demonstrations ({sorted(demos.images)})")
    texts = list(demos.instructions)
    lookup = {s: i for i, s in enumerate(texts)}
    pairs: list[tuple[int, ...]] = []
    if text != "instruction":
        if not descriptions:
            raise ValueError(f"text={text!r} needs scene descriptions per episode (datasets from "
                             "vla-sim collect record them)")
        for s in sorted(set(descriptions.values())):
            if s not in lookup:
                lookup[s] = len(texts)
                texts.append(s)
    for instr, ep in zip(demos.instruction_index, demos.episode_index):
        options = []
        if text in ("instruction", "both"):
            options.append(int(instr))
        if text in ("description", "both"):
            options.append(lookup[descriptions[int(ep)]])
        pairs.append(tuple(options))
    return VLPairs(demos.images[camera_key], texts, pairs, np.asarray(demos.episode_index))


def pairs_from_datasets(datasets: Sequence[Any], cfg: VLPretrainConfig) -> VLPairs:
    """Pairs from one or more :class:`vla_sim.data.VLADataset` (episodes kept apart)."""
    from vla_sim.data.demos import concat_demos

    parts = [DemoArrays.from_dataset(d) for d in datasets]
    demos, _ = concat_demos(parts)
    descriptions = None
    if cfg.text != "instruction":
        descriptions, offset = {}, 0
        for d, part in zip(datasets, parts):  # same episode renumbering as concat_demos
            eps = np.unique(part.episode_index)
            for e in eps:
                descriptions[int(e - eps.min() + offset)] = describe_scene(
                    d.reader.episode_record(int(e))["randomization"])
            offset += int(eps.max() - eps.min()) + 1
    key = cfg.policy.image_keys[cfg.policy.cameras.index(cfg.camera)]
    return make_pairs(demos, key, cfg.text, descriptions)


# ------------------------------------------------------------------------------------ training
def _images(pairs: VLPairs, ids: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pairs.images[ids])).to(device) \
        .permute(0, 3, 1, 2).float().div_(255.0)


@torch.no_grad()
def retrieval_accuracy(model: VisionLanguageModel, pairs: VLPairs, text_feats: torch.Tensor,
                       ids: np.ndarray, k: int, seed: int = 0) -> tuple[float, float]:
    """(accuracy, chance): the fraction of frames ``ids`` whose true text ranks first among K
    candidates, the true text and K-1 other distinct texts *of the same frames* (for held-out
    episodes: texts the model never trained on, so no seen text can win by familiarity), drawn
    with a fixed seed. Chance is 1 / min(K, distinct texts)."""
    true = pairs.primary
    pool = np.unique(true[ids]) if len(ids) else np.zeros(0, np.int64)
    if len(pool) < 2:
        return float("nan"), float("nan")
    was_training = model.training
    model.eval()
    device = text_feats.device
    text_emb = model.encode_text(text_feats)
    rng = np.random.default_rng([seed, 11])
    kk = min(k, len(pool))
    hits = 0
    for start in range(0, len(ids), 256):
        chunk = ids[start:start + 256]
        img = model.encode_image(_images(pairs, chunk, device))
        sims = (img @ text_emb.T).cpu().numpy()
        for row, i in zip(sims, chunk):
            others = pool[pool != true[i]]
            cand = rng.choice(others, size=kk - 1, replace=False)
            hits += int(row[true[i]] > row[cand].max())
    model.train(was_training)
    return hits / len(ids), 1.0 / kk


@dataclass
class VLPretrainResult:
    model: VisionLanguageModel
    losses: list[float]
    retrieval_before: float
    """Held-out episodes (texts never trained on), before training."""
    retrieval_after: float
    """Held-out episodes, after training: the zero-shot figure."""
    chance: float
    retrieval_train: float
    """Frames and texts of training episodes, after training (did it fit the pairs?)."""
    chance_train: float
    num_texts: int
    temperature: float


def pretrain_vl(pairs: VLPairs, config: VLPretrainConfig | None = None, encoder: Any = None,
                log: Callable[[int, float], None] | None = None) -> VLPretrainResult:
    """Train a :class:`VisionLanguageModel` on ``pairs``; report retrieval accuracy on held-out
    episodes before and after.

    Under ``torchrun`` (:mod:`.distributed`) each process encodes its rows of the global batch
    and the image embeddings are gathered, so InfoNCE runs over the whole global batch (every
    frame against every text, as in one process); every process returns the same result."""
    cfg = config or VLPretrainConfig()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    with distributed.session(cfg.device) as dist:
        return _pretrain_vl(pairs, cfg, encoder, log, dist)


def _pretrain_vl(pairs: VLPairs, cfg: VLPretrainConfig, encoder: Any,
                 log: Callable[[int, float], None] | None,
                 dist: distributed.Distributed) -> VLPretrainResult:
    device = dist.device(resolve_device(cfg.device))
    rows = dist.rows(cfg.batch_size) if dist.active else None
    if encoder is None:
        from vla_sim.language.encoder import get_text_encoder

        encoder = get_text_encoder(cfg.policy.text_encoder)
    # Rank 0 first: it may add the strings to a dataset's feature cache the others read.
    pooled = dist.main_first(lambda: encoder.encode(pairs.texts)[0])
    if pooled.shape[1] != cfg.policy.text_dim:
        raise ValueError(f"text encoder gives {pooled.shape[1]}-d vectors, policy.text_dim is "
                         f"{cfg.policy.text_dim}")
    text_feats = torch.from_numpy(pooled).to(device)
    train_ids, val_ids = split_episodes(pairs.episode_index, cfg.val_fraction, cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = VisionLanguageModel(cfg).to(device)
    dist.broadcast_module(model)
    before, chance = retrieval_accuracy(model, pairs, text_feats, val_ids, cfg.retrieval_k, cfg.seed)
    optimizer = adamw(model.trainable(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps, cfg.lr * 0.05)
    model.train()

    def sample(rng: np.random.Generator):
        """The global batch's draws: texts of all its frames, images of this process's rows."""
        ids = train_ids[rng.integers(0, len(train_ids), cfg.batch_size)]
        tid = torch.tensor([p[rng.integers(len(p))] for p in (pairs.pair_texts[i] for i in ids)],
                           device=device)
        offsets, factors = draw_augmentation(rng, len(ids), cfg.shift_pad, cfg.color_jitter)
        if rows is not None:
            ids = ids[rows]
            offsets = None if offsets is None else offsets[rows]
            factors = None if factors is None else factors[rows]
        return apply_augmentation(_images(pairs, ids, device), offsets, factors,
                                  cfg.shift_pad), tid

    def loss(batch) -> torch.Tensor:
        images, tid = batch
        # The image embeddings of every process's rows (one for one process): the contrast is
        # over the global batch.
        return info_nce_loss(dist.gather(model.encode_image(images)),
                             model.encode_text(text_feats[tid]), model.logit_scale(), tid)

    callbacks = [] if log is None or not dist.is_main else [
        lambda step, value, _norm: log(step, value)]
    losses = SupervisedLoop(model.trainable(), optimizer, sample, loss, cfg.seed, scheduler,
                            callbacks=callbacks, dist=dist).run(0, cfg.steps)
    after, _ = retrieval_accuracy(model, pairs, text_feats, val_ids, cfg.retrieval_k, cfg.seed)
    sub = np.random.default_rng([cfg.seed, 12]).permutation(train_ids)[:1024]
    on_train, chance_train = retrieval_accuracy(model, pairs, text_feats, np.sort(sub),
                                                cfg.retrieval_k, cfg.seed)
    model.eval()
    return VLPretrainResult(model, losses, before, after, chance, on_train, chance_train,
                            len(pairs.texts), float(1.0 / model.logit_scale().detach()))


# ----------------------------------------------------------------------------- save / init BC
def save_vl(model: VisionLanguageModel, cfg: VLPretrainConfig, directory: str | Path,
            meta: dict | None = None) -> Path:
    """``vl_model.safetensors`` + ``vl_config.json`` (no pickled code)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(directory / VL_WEIGHTS))
    atomic_write_json(directory / VL_CONFIG, {"config": config_to_dict(cfg), "meta": meta or {}})
    return directory


def load_vl(directory: str | Path) -> tuple[VisionLanguageModel, VLPretrainConfig]:
    from vla_sim.agents.policies.checkpoint import load_state_strict, read_weights

    directory = Path(directory)
    path = directory / VL_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"no VL pre-training checkpoint at {directory} (missing {VL_CONFIG})")
    cfg = config_from_dict(VLPretrainConfig, json.loads(path.read_text())["config"])
    model = VisionLanguageModel(cfg)
    load_state_strict(model, read_weights(directory / VL_WEIGHTS), str(directory))
    return model.eval(), cfg


def init_policy_vision(policy: VLAPolicy, source: VisionLanguageModel | str | Path,
                       camera: str = "front") -> list[str]:
    """Copy the pre-trained conv stages and fc (not FiLM) into ``policy.extractor.vision[camera]``.
    Returns the parameter names copied; shape mismatches raise ValueError."""
    model = load_vl(source)[0] if isinstance(source, (str, Path)) else source
    target = policy.extractor.vision[camera]
    src = {k: v for k, v in model.vision.state_dict().items() if not k.startswith("film.")}
    own = target.state_dict()
    bad = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in src.items()
           if k not in own or own[k].shape != v.shape]
    if bad:
        raise ValueError("pre-trained vision encoder does not fit the policy (same image_size, "
                         f"channels, vision and image_features needed): {bad[:5]}")
    target.load_state_dict(src, strict=False)
    return sorted(src)


def train_bc_with_init(data: DemoArrays, out_dir: str | Path, config: BCConfig,
                       init: Callable[[VLAPolicy], Any], encoder: Any = None, **kwargs: Any):
    """``train_bc`` whose freshly built, normalised policy first goes through ``init`` (e.g.
    :func:`init_policy_vision`); everything else (seed, schedule, batches, budget) is that of a
    plain ``train_bc`` run, so the two are comparable step for step."""
    from .bc import train_bc

    return train_bc(data, out_dir, config, init_fn=init, encoder=encoder, **kwargs)


__all__ = ["TEXT_SOURCES", "VLPairs", "VLPretrainConfig", "VLPretrainResult",
           "VisionLanguageModel", "describe_scene", "info_nce_loss", "init_policy_vision",
           "load_vl", "make_pairs", "pairs_from_datasets", "pretrain_vl", "retrieval_accuracy",
           "save_vl", "train_bc_with_init"]
