"""Demonstration datasets in LeRobotDataset v3.0 format: writer, reader/validator, torch Dataset,
and expert-demonstration collection.

Names are imported lazily so collection workers load neither pandas nor torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DatasetError": "vla_sim.data.format",
    "DatasetReader": "vla_sim.data.reader",
    "open_dataset": "vla_sim.data.reader",
    "Episode": "vla_sim.data.writer",
    "EncodedEpisode": "vla_sim.data.writer",
    "LeRobotDatasetWriter": "vla_sim.data.writer",
    "encode_episode": "vla_sim.data.writer",
    "frame_sha256": "vla_sim.data.writer",
    "VLADataset": "vla_sim.data.torch_dataset",
    "CollectConfig": "vla_sim.data.collect",
    "collect": "vla_sim.data.collect",
    "rollout_episode": "vla_sim.data.collect",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vla_sim.data' has no attribute {name!r}")
