"""Replace the ``instruction`` text observation by fixed-size embeddings a network can eat.

Stable-Baselines3 rejects ``Text`` spaces, and re-encoding the same sentence every step wastes
~5 ms; this wrapper encodes an instruction once (the encoder caches per string) and emits:

- ``instruction_embedding``: Box(D,) float32, the L2-normalised mean of token states;
- ``instruction_tokens``: Box(max_tokens, D) float32, per-token states, zero-padded (if ``tokens``);
- ``instruction_mask``: Box(max_tokens,) float32, 1 for real tokens, 0 for padding (if ``tokens``).

Every other observation key passes through unchanged.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class InstructionEmbedding(gym.ObservationWrapper):
    """Swap ``obs["instruction"]`` (a string) for its embedding arrays.

    Args:
        env: an env whose observation space is a ``Dict`` with an ``instruction`` ``Text`` space.
        encoder: anything with ``features(list[str], max_tokens) -> dict`` and ``dim``; default
            the process-wide all-MiniLM-L6-v2 :class:`~vla_sim.language.encoder.TextEncoder`.
        max_tokens: token positions kept (``[CLS]`` and ``[SEP]`` count); longer instructions
            are truncated, shorter ones zero-padded.
        tokens: also emit ``instruction_tokens`` and ``instruction_mask``.
    """

    def __init__(self, env: gym.Env, encoder: Any = None, max_tokens: int = 16,
                 tokens: bool = True):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Dict) or "instruction" not in space.spaces:
            raise ValueError(
                "InstructionEmbedding needs a Dict observation space with an 'instruction' key, "
                f"got {space}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if encoder is None:
            from vla_sim.language.encoder import get_text_encoder

            encoder = get_text_encoder()
        self.encoder = encoder
        self.max_tokens = int(max_tokens)
        self.tokens = bool(tokens)
        dim = int(encoder.dim)
        new = {k: v for k, v in space.spaces.items() if k != "instruction"}
        new["instruction_embedding"] = spaces.Box(-1.0, 1.0, (dim,), np.float32)
        if self.tokens:
            new["instruction_tokens"] = spaces.Box(-np.inf, np.inf, (self.max_tokens, dim),
                                                   np.float32)
            new["instruction_mask"] = spaces.Box(0.0, 1.0, (self.max_tokens,), np.float32)
        self.observation_space = spaces.Dict(new)
        self._last: tuple[str, dict[str, np.ndarray]] | None = None

    def _features(self, instruction: str) -> dict[str, np.ndarray]:
        # The instruction is fixed for an episode: remember the last one, fall back to the
        # encoder's LRU cache for everything else.
        if self._last is None or self._last[0] != instruction:
            feats = self.encoder.features([instruction], self.max_tokens)
            keep = {"instruction_embedding": feats["instruction_embedding"][0]}
            if self.tokens:
                keep["instruction_tokens"] = feats["instruction_tokens"][0]
                keep["instruction_mask"] = feats["instruction_mask"][0]
            self._last = (instruction, keep)
        return self._last[1]

    def observation(self, observation: dict) -> dict:
        out = {k: v for k, v in observation.items() if k != "instruction"}
        for key, value in self._features(str(observation["instruction"])).items():
            out[key] = value.copy()  # callers may modify observations in place
        return out
