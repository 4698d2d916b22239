"""Seeds derived from (base seed, episode index), never from a stream consumed in worker order.

Episode ``i`` of a run with base seed ``s`` is the same episode whatever the number of workers,
vector-env size or order in which episodes run.
"""

from __future__ import annotations

import numpy as np


def episode_seed(base_seed: int, index: int) -> int:
    """A 32-bit env seed for episode ``index`` of a run with ``base_seed``."""
    if index < 0:
        raise ValueError(f"episode index must be >= 0, got {index}")
    seq = np.random.SeedSequence(entropy=int(base_seed), spawn_key=(int(index),))
    return int(seq.generate_state(1, dtype=np.uint32)[0])


# Training (demonstration collection, RL) and evaluation draw base seeds from disjoint ranges so
# that no evaluation episode is ever a training episode.
TRAIN_BASE_SEED = 0
EVAL_BASE_SEED = 1_000_003
DAGGER_BASE_SEED = 2_000_029
"""Base seed of DAgger rollouts: disjoint from demonstration collection (``TRAIN_BASE_SEED``) and
evaluation (``EVAL_BASE_SEED``), so no rollout replays a demo or an evaluation episode."""
