"""Instruction templates with synonyms, and the train / held-out splits.

The ``heldout`` split differs from ``train`` in two ways: its sentence templates never appear in
training, and its target objects use colour-shape combinations that training never names
(:data:`HELDOUT_COMBOS`). Colour and noun synonyms are shared by both splits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "heldout")

COLOR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet"),
    "green": ("green", "emerald"),
    "blue": ("blue", "azure"),
    "yellow": ("yellow", "golden"),
    "purple": ("purple", "violet"),
    "orange": ("orange", "tangerine"),
}
NOUN_WORDS: dict[str, tuple[str, ...]] = {
    "cube": ("cube", "block"),
    "cylinder": ("cylinder", "can"),
    "sphere": ("sphere", "ball"),
    "tray": ("bowl", "container", "tray"),
    "zone": ("area", "zone", "pad"),
}

# One shape per colour, two colours per shape: never named as a target in the train split.
HELDOUT_COMBOS: frozenset[tuple[str, str]] = frozenset({
    ("red", "sphere"), ("green", "cylinder"), ("blue", "cube"),
    ("yellow", "cylinder"), ("purple", "sphere"), ("orange", "cube"),
})

# {obj} is the target object, {dest} the container / zone / base object.
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "reach": {
        "train": ("reach the {obj}", "move the gripper to the {obj}", "touch the {obj}",
                  "go to the {obj}", "move your hand above the {obj}"),
        "heldout": ("bring the end effector over the {obj}", "hover above the {obj}"),
    },
    "push": {
        "train": ("push the {obj} to the {dest}", "slide the {obj} onto the {dest}",
                  "push the {obj} into the {dest}", "move the {obj} to the {dest} by pushing it"),
        "heldout": ("nudge the {obj} until it reaches the {dest}",
                    "shove the {obj} over to the {dest}"),
    },
    "pick_place": {
        "train": ("pick up the {obj} and put it in the {dest}", "put the {obj} in the {dest}",
                  "place the {obj} into the {dest}", "move the {obj} to the {dest}",
                  "grab the {obj} and drop it in the {dest}"),
        "heldout": ("transfer the {obj} into the {dest}", "the {obj} belongs in the {dest}"),
    },
    "stack": {
        "train": ("stack the {obj} on the {dest}", "put the {obj} on top of the {dest}",
                  "place the {obj} onto the {dest}", "pick up the {obj} and stack it on the {dest}"),
        "heldout": ("build a tower with the {obj} above the {dest}",
                    "set the {obj} down on top of the {dest}"),
    },
}


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown instruction split {split!r}; valid splits: {list(SPLITS)}")
    return split


def allowed_combo(color: str, shape: str, split: str, target: bool) -> bool:
    """Whether a movable object may appear with this colour-shape pair in a split.

    Train never shows a held-out combination at all; held-out targets must use one.
    """
    held = (color, shape) in HELDOUT_COMBOS
    if split == "train":
        return not held
    return held if target else True


@dataclass(frozen=True)
class Instruction:
    text: str
    template: str
    split: str


def phrase(color: str, shape: str, rng: np.random.Generator) -> str:
    c = COLOR_WORDS[color]
    n = NOUN_WORDS[shape]
    return f"{c[int(rng.integers(len(c)))]} {n[int(rng.integers(len(n)))]}"


def make_instruction(task: str, split: str, obj: tuple[str, str], dest: tuple[str, str] | None,
                     rng: np.random.Generator, template: str | None = None) -> Instruction:
    """A sentence for ``task`` naming ``obj`` (colour, shape) and ``dest`` (colour, shape).

    ``template``: one of the split's templates to use instead of drawing one (the same sentence
    naming other objects, e.g. the env's swap probe); the synonyms are still drawn from ``rng``.
    """
    check_split(split)
    try:
        templates = TEMPLATES[task][split]
    except KeyError:
        raise ValueError(f"no instruction templates for task {task!r}; "
                         f"tasks: {sorted(TEMPLATES)}") from None
    if template is None:
        template = templates[int(rng.integers(len(templates)))]
    elif template not in templates:
        raise ValueError(f"{template!r} is not a {split} template of task {task!r}")
    words = {"obj": phrase(*obj, rng)}
    if dest is not None:
        words["dest"] = phrase(*dest, rng)
    return Instruction(template.format(**words), template, split)


def paraphrases(task: str, roles: dict[str, str], n: int, rng: np.random.Generator,
                split: str = "train") -> list[str]:
    """Up to ``n`` distinct instructions for the same task and objects, drawn from ``split``'s
    templates and synonyms. ``roles`` maps ``object`` / ``destination`` to scene names
    ``<colour>_<shape>`` (``TaskInstance.roles``). BC's language augmentation: the same
    demonstration under other wordings, so the policy binds colour and shape words to pixels
    instead of memorising whole sentences."""
    def pair(name: str) -> tuple[str, str]:
        color, shape = name.split("_")[-2:]
        return color, shape

    obj = pair(roles["object"])
    dest = pair(roles["destination"]) if "destination" in roles else None
    out: dict[str, None] = {}
    for _ in range(4 * n):  # duplicates are likely with few templates; stop at n distinct
        out[make_instruction(task, split, obj, dest, rng).text] = None
        if len(out) == n:
            break
    return list(out)
