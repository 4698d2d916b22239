"""Scripted experts for every task (privileged-state waypoint controllers)."""

from vla_sim.agents.experts.scripted import (
                                             EXPERTS,
                                             MultiTaskExpert,
                                             PickPlaceExpert,
                                             PushExpert,
                                             ReachExpert,
                                             ScriptedExpert,
                                             StackExpert,
                                             make_expert,
)

__all__ = ["EXPERTS", "MultiTaskExpert", "PickPlaceExpert", "PushExpert", "ReachExpert",
           "ScriptedExpert", "StackExpert", "make_expert"]
