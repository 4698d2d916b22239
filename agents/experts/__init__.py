"""Scripted experts for every task (privileged-state waypoint controllers)."""

from vla_sim.agents.experts.scripted import (
                                             EXPERTS,
                                             GATED_EXPERTS,
                                             GatedReachExpert,
                                             MultiTaskExpert,
                                             PickPlaceExpert,
                                             PushExpert,
                                             ReachExpert,
                                             ScriptedExpert,
                                             StackExpert,
                                             make_expert,
                                             make_gated_expert,
)

__all__ = ["EXPERTS", "GATED_EXPERTS", "GatedReachExpert", "MultiTaskExpert", "PickPlaceExpert",
           "PushExpert", "ReachExpert", "ScriptedExpert", "StackExpert", "make_expert",
           "make_gated_expert"]
