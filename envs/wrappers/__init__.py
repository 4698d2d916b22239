"""Gymnasium wrappers: each does one thing and says so in its name."""

from vla_sim.envs.wrappers.instruction_embedding import InstructionEmbedding
from vla_sim.envs.wrappers.privileged_state import PrivilegedObservation

__all__ = ["InstructionEmbedding", "LanguageRewardWrapper", "PrivilegedObservation"]


def __getattr__(name: str):
    # The language reward pulls in the describer; import it only when asked for.
    if name == "LanguageRewardWrapper":
        from vla_sim.envs.wrappers.language_reward import LanguageRewardWrapper

        return LanguageRewardWrapper
    raise AttributeError(name)
