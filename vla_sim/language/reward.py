"""A language reward: how close the described scene is to what the instruction asks.

Potential ``phi(s)`` is the (max or softmax-weighted) cosine similarity between the embedding
of the instruction's *goal sentence* and the embeddings of true sentences about state ``s``
(:mod:`vla_sim.language.describer`). Shaping ``F = gamma * phi(s') - phi(s)`` is potential-based
(Ng et al. 1999), so it leaves the optimal policy unchanged; ``phi`` of a terminal state is 0.

Why not the raw instruction against every sentence (``grounding="instruction"``)? Measured with
all-MiniLM-L6-v2: "stack the yellow cube on the purple cube" is closer to "the purple cube is on
the yellow cube" (0.831) than to the true goal "the yellow cube is on the purple cube" (0.824),
and "pick up the crimson block and put it in the azure container" scores 0.32 against "the red
cube is in the purple bowl" but 0.24 against "the red cube is in the blue bowl". So the default
(``grounding="roles"``):

1. parses the instruction with the shared vocabulary into (task, target, destination) and renders
   the goal as a describer sentence ("the red cube is in the blue bowl");
2. keeps only progress facts whose roles fit the instruction: the gripper acting on the target,
   or the target related to the destination (never "left of", never other objects);
3. takes the max cosine of the goal with those sentences (0 when none holds).

Measured cosines to the pick-place goal, in task order: gripper near / above / holding the
target 0.51-0.52, target lifted 0.67, above the right bowl 0.96, in the right bowl 1.0. The wrong
bowl (0.92) and the wrong object (0.86) would score high without step 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from vla_sim.language.describer import GRIPPER, Fact, describe_facts, object_phrase, render
from vla_sim.language.instructions import COLOR_WORDS, NOUN_WORDS

GROUNDINGS = ("roles", "goal", "instruction")
AGGREGATES = ("max", "softmax")
# Progress relations the "roles" grounding keeps (left_of / on_table say nothing about progress).
PROGRESS_RELATIONS = ("gripper_near", "gripper_above", "holding", "lifted", "near", "above", "in",
                      "on")

_COLOR_OF = {w: c for c, words in COLOR_WORDS.items() for w in words}
_SHAPE_OF = {w: s for s, words in NOUN_WORDS.items() for w in words}


@dataclass(frozen=True)
class Goal:
    """What an instruction asks: ``task`` and (colour, shape) of target and destination."""

    task: str
    target: tuple[str, str]
    destination: tuple[str, str] | None

    @property
    def target_phrase(self) -> str:
        return object_phrase(*self.target)

    @property
    def destination_phrase(self) -> str | None:
        return object_phrase(*self.destination) if self.destination else None

    def sentence(self) -> str:
        """The goal as a describer sentence ("the red cube is in the blue bowl")."""
        if self.task == "reach":
            return render("gripper_above", obj=self.target_phrase)
        relation = "in" if self.task == "pick_place" else "on"
        return render(relation, self.target_phrase, self.destination_phrase)


def parse_instruction(text: str) -> Goal | None:
    """(task, target, destination) from an instruction's colour-noun mentions, or None.

    The first "<colour> <noun>" is the target, the second the destination; the destination's
    shape names the task (bowl -> pick_place, area -> push, a movable object -> stack; none ->
    reach). Works for every train and held-out template in instructions.py.
    """
    words = re.findall(r"[a-z]+", text.lower())
    mentions = [(_COLOR_OF[a], _SHAPE_OF[b]) for a, b in zip(words, words[1:])
                if a in _COLOR_OF and b in _SHAPE_OF]
    if not mentions:
        return None
    target = mentions[0]
    dest = mentions[1] if len(mentions) > 1 else None
    if dest is None:
        return Goal("reach", target, None)
    task = {"tray": "pick_place", "zone": "push"}.get(dest[1], "stack")
    return Goal(task, target, dest)


class LanguageReward:
    """Potential from the similarity of the described state to the instruction's goal.

    Args:
        encoder: anything with ``encode(list[str]) -> (pooled (N,D), ...)`` (L2-normalised
            pooled vectors); default the shared all-MiniLM-L6-v2 encoder.
        grounding: ``roles`` (default; see the module docstring), ``goal`` (goal sentence against
            every fact) or ``instruction`` (raw instruction against every fact: the naive
            baseline, kept for measurement).
        aggregate: ``max`` or ``softmax`` (similarities weighted by softmax(sim / temperature)).
        gamma: discount of the shaping term; must equal the RL algorithm's.
        floor: potential when no kept fact holds.
    """

    def __init__(self, encoder: Any = None, grounding: str = "roles", aggregate: str = "max",
                 temperature: float = 0.05, gamma: float = 0.99, floor: float = 0.0):
        if grounding not in GROUNDINGS:
            raise ValueError(f"grounding must be one of {GROUNDINGS}, got {grounding!r}")
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if encoder is None:
            from vla_sim.language.encoder import get_text_encoder

            encoder = get_text_encoder()
        self.encoder = encoder
        self.grounding, self.aggregate = grounding, aggregate
        self.temperature, self.gamma, self.floor = float(temperature), float(gamma), float(floor)
        self._emb: dict[str, np.ndarray] = {}  # sentence -> unit vector (D,)
        self._goals: dict[str, tuple[Goal | None, np.ndarray]] = {}  # instruction -> goal, query

    # --- embeddings -------------------------------------------------------------------------
    def embed(self, sentences: Sequence[str]) -> np.ndarray:
        """Unit vectors (N, D) for ``sentences``, each encoded once per reward object."""
        missing = [s for s in dict.fromkeys(sentences) if s not in self._emb]
        if missing:
            pooled = np.asarray(self.encoder.encode(list(missing))[0], np.float64)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            self._emb.update(zip(missing, pooled))
        return np.stack([self._emb[s] for s in sentences]) if sentences else np.zeros((0, 1))

    def prepare(self, instruction: str) -> Goal | None:
        """Parse ``instruction`` and embed its goal and every progress sentence it can reach
        (call at reset so that steps never run the encoder). Returns the parsed goal."""
        if instruction not in self._goals:
            goal = parse_instruction(instruction)
            if self.grounding == "instruction" or goal is None:
                query_text = instruction  # no goal sentence: fall back to the raw instruction
            else:
                query_text = goal.sentence()
            if goal is not None and self.grounding == "roles":
                self.embed(self.progress_sentences(goal))
            self._goals[instruction] = (goal, self.embed([query_text])[0])
        return self._goals[instruction][0]

    @staticmethod
    def progress_sentences(goal: Goal) -> list[str]:
        """Every sentence the ``roles`` grounding may keep for ``goal``."""
        t, d = goal.target_phrase, goal.destination_phrase
        out = [render(r, obj=t) for r in ("gripper_near", "gripper_above", "holding")]
        out.append(render("lifted", t))
        if d is not None:
            out += [render(r, t, d) for r in ("near", "above", "in", "on")]
        return out

    # --- potential ----------------------------------------------------------------------------
    def kept_facts(self, state: dict[str, Any], goal: Goal | None) -> list[Fact]:
        """The facts of ``state`` that the potential looks at."""
        facts = describe_facts(state)
        if self.grounding != "roles" or goal is None:
            return facts
        objects = state["objects"]

        def phrase(name: str | None) -> str | None:
            o = objects.get(name) if name else None
            return object_phrase(o["color"], o["shape"]) if o else name

        t, d = goal.target_phrase, goal.destination_phrase
        return [f for f in facts if f.relation in PROGRESS_RELATIONS and (
            (f.subject == GRIPPER and phrase(f.object) == t)
            or (phrase(f.subject) == t and (f.object is None or phrase(f.object) == d)))]

    def similarities(self, state: dict[str, Any]) -> tuple[list[str], np.ndarray]:
        """(kept sentences, their cosine with the goal / instruction)."""
        instruction = state["instruction"]
        goal = self.prepare(instruction)
        query = self._goals[instruction][1]
        sentences = [f.text for f in self.kept_facts(state, goal)]
        if not sentences:
            return [], np.zeros(0)
        return sentences, self.embed(sentences) @ query

    def potential(self, state: dict[str, Any]) -> float:
        """``phi(s)`` for a privileged-state dict (it carries the instruction)."""
        _, sims = self.similarities(state)
        if sims.size == 0:
            return self.floor
        if self.aggregate == "max":
            return float(sims.max())
        w = np.exp((sims - sims.max()) / self.temperature)
        return float((w / w.sum()) @ sims)

    def shaping(self, phi: float, phi_next: float, terminated: bool) -> float:
        """``gamma * phi(s') - phi(s)``, with ``phi`` of a terminal state taken as 0."""
        return self.gamma * (0.0 if terminated else phi_next) - phi


__all__ = ["AGGREGATES", "GROUNDINGS", "Goal", "LanguageReward", "parse_instruction"]
