"""Domain randomization: ranges and levels in, a frozen serialisable sample out."""

from vla_sim.randomization.colors import COLOR_NAMES, COLOR_REGIONS, SHAPES
from vla_sim.randomization.config import LEVELS, RandomizationConfig, resolve_randomization
from vla_sim.randomization.sample import ObjectSample, Placement, RandomizationSample
from vla_sim.randomization.sampler import LayoutError, sample_randomization

__all__ = ["COLOR_NAMES", "COLOR_REGIONS", "SHAPES", "LEVELS", "RandomizationConfig",
           "resolve_randomization", "ObjectSample", "Placement", "RandomizationSample",
           "LayoutError", "sample_randomization"]
