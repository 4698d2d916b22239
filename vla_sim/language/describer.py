"""State describer: privileged task state -> short TRUE sentences about the scene.

Every sentence is a :class:`Fact` ``(subject, relation, object)`` rendered with the canonical
words of :mod:`vla_sim.language.instructions` (colour name + first noun synonym: "red cube",
"blue bowl", "green area"), e.g. "the gripper is holding the red cube", "the red cube is in the
blue bowl", "the green cube is left of the yellow cube". The language reward compares these
sentences with the instruction's goal; the structured fact lets it keep only sentences about the
objects the instruction names (pooled sentence embeddings confuse objects, see DESIGN.md).

Frame: world metres, table top at z = 0. "Left" is the robot's left (+y; the robot base sits at
negative x looking along +x); in the front camera image (looking back at the robot) +y is the
image's right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_sim.language.instructions import NOUN_WORDS

GRIPPER = "gripper"
TABLE = "table"

# Geometry thresholds (m). Tray / zone sizes mirror vla_sim/sim/scene.py (TRAY_HALF, TRAY_WALL,
# ZONE_HALF; a test checks they agree) without importing the simulator into the language package.
TRAY_HALF, TRAY_WALL, ZONE_HALF = 0.06, 0.03, 0.05
NEAR = 0.08  # gripper "near" an object: 3-D distance below this
ABOVE_XY = 0.03  # "above": horizontal offset below this
ABOVE_Z = 0.15  # ... and at most this much higher
ZONE_ON = 0.04  # object centre within this horizontal distance of a zone centre (Push success)
ZONE_NEAR = 0.10
LIFT = 0.03  # an object more than this above its resting height (and not on another) is lifted
STACK_XY, STACK_Z = 0.02, 0.008  # "X is on Y": aligned within 2 cm, height within 8 mm of contact
LEFT_OF = 0.05  # "X is left of Y": X at least this much further along +y

# relation -> sentence template; {subj} and {obj} are object phrases ("red cube", "blue bowl").
RELATIONS: dict[str, str] = {
    "holding": "the gripper is holding the {obj}",
    "gripper_above": "the gripper is above the {obj}",
    "gripper_near": "the gripper is near the {obj}",
    "lifted": "the {subj} is lifted",
    "on_table": "the {subj} is on the table",
    "in": "the {subj} is in the {obj}",
    "above": "the {subj} is above the {obj}",
    "on": "the {subj} is on the {obj}",
    "near": "the {subj} is near the {obj}",
    "left_of": "the {subj} is left of the {obj}",
}
MOVABLE = ("cube", "cylinder", "sphere")


@dataclass(frozen=True)
class Fact:
    """One true statement: ``subject`` and ``object`` are scene object names (``red_cube``),
    ``"gripper"``, ``"table"`` or None; ``text`` is the rendered sentence."""

    subject: str
    relation: str
    object: str | None
    text: str


def object_phrase(color: str, shape: str) -> str:
    """Canonical words for an object: colour name and the first noun synonym ("blue bowl")."""
    return f"{color} {NOUN_WORDS[shape][0]}"


def render(relation: str, subj: str | None = None, obj: str | None = None) -> str:
    """The sentence for ``relation`` with object phrases ``subj`` / ``obj``."""
    return RELATIONS[relation].format(subj=subj, obj=obj)


def describe_facts(state: dict[str, Any]) -> list[Fact]:
    """All facts that hold in ``state`` (the dict of ``env.unwrapped.privileged_state()``),
    in a deterministic order (objects sorted by name)."""
    objects = state["objects"]
    names = sorted(objects)
    pos = {n: np.asarray(objects[n]["position"], np.float64) for n in names}
    phrase = {n: object_phrase(objects[n]["color"], objects[n]["shape"]) for n in names}
    shape = {n: objects[n]["shape"] for n in names}
    rest = {n: float(objects[n].get("half_height", 0.0)) for n in names}
    movable = [n for n in names if shape[n] in MOVABLE]
    ee = np.asarray(state["ee_position"], np.float64)
    facts: list[Fact] = []

    def add(relation: str, subject: str, obj: str | None) -> None:
        facts.append(Fact(subject, relation, obj, render(
            relation, phrase.get(subject, subject), phrase.get(obj, obj))))

    # The gripper and each movable object.
    for n in movable:
        if state.get("holding") == n:
            add("holding", GRIPPER, n)
        d = ee - pos[n]
        if np.linalg.norm(d[:2]) < ABOVE_XY and 0.0 < d[2] < ABOVE_Z:
            add("gripper_above", GRIPPER, n)
        if np.linalg.norm(d) < NEAR:
            add("gripper_near", GRIPPER, n)

    # Each movable object against containers, zones and other movable objects.
    for n in movable:
        supported = False
        for m in names:
            if m == n:
                continue
            d = pos[n] - pos[m]
            xy = float(np.linalg.norm(d[:2]))
            if shape[m] == "tray":
                if np.all(np.abs(d[:2]) < TRAY_HALF - 0.01):
                    inside = pos[n][2] < TRAY_WALL + 0.02
                    add("in" if inside else "above", n, m)
                    supported |= inside
            elif shape[m] == "zone":
                if xy < ZONE_ON:
                    add("on", n, m)
                elif xy < ZONE_NEAR:
                    add("near", n, m)
            elif shape[m] in MOVABLE:
                contact = rest[n] + rest[m]
                if xy < STACK_XY and abs(d[2] - contact) < STACK_Z:
                    add("on", n, m)
                    supported = True
                elif xy < ABOVE_XY and d[2] > contact + STACK_Z:
                    add("above", n, m)
                if d[1] > LEFT_OF:
                    add("left_of", n, m)
        lifted = pos[n][2] > rest[n] + LIFT
        if lifted and not supported:
            add("lifted", n, None)
        elif not lifted and not supported:
            add("on_table", n, TABLE)
    return facts


def describe(state: dict[str, Any]) -> list[str]:
    """Short true sentences about ``state`` (see :func:`describe_facts`)."""
    return [f.text for f in describe_facts(state)]


__all__ = ["Fact", "RELATIONS", "describe", "describe_facts", "object_phrase", "render"]
