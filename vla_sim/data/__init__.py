"""Demonstration datasets in LeRobotDataset v3.0 format: writer, reader/validator, torch Dataset,
and expert-demonstration collection."""

from vla_sim.data.format import DatasetError
from vla_sim.data.reader import DatasetReader, open_dataset
from vla_sim.data.writer import Episode, EncodedEpisode, LeRobotDatasetWriter, encode_episode, frame_sha256

__all__ = ["DatasetError", "DatasetReader", "open_dataset", "Episode", "EncodedEpisode",
           "LeRobotDatasetWriter", "encode_episode", "frame_sha256", "VLADataset"]


def __getattr__(name: str):
    if name == "VLADataset":  # imports torch; keep `import vla_sim.data` light
        from vla_sim.data.torch_dataset import VLADataset

        return VLADataset
    raise AttributeError(name)
