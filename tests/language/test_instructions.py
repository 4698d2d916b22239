"""Instruction paraphrases for language augmentation: same task and objects, other wordings."""

import numpy as np
import pytest

from vla_sim.language.instructions import (
    COLOR_WORDS,
    NOUN_WORDS,
    TEMPLATES,
    paraphrases,
)


def _names_objects(text: str, color: str, shape: str) -> bool:
    return any(c in text for c in COLOR_WORDS[color]) and any(n in text for n in NOUN_WORDS[shape])


@pytest.mark.parametrize("task, roles", [
    ("reach", {"object": "red_cube"}),
    ("pick_place", {"object": "orange_sphere", "destination": "blue_tray"}),
    ("stack", {"object": "green_cube", "destination": "yellow_cube"}),
])
def test_paraphrases_are_distinct_train_wordings_of_the_same_objects(task, roles):
    texts = paraphrases(task, roles, 6, np.random.default_rng(0))
    assert len(texts) == len(set(texts)) >= 3
    for text in texts:
        for name in roles.values():
            assert _names_objects(text, *name.split("_")), (text, name)
    prefixes = [t.split("{")[0] for t in TEMPLATES[task]["heldout"]]
    heldout_only = [p for p in prefixes if not any(t.startswith(p)
                                                    for t in TEMPLATES[task]["train"])]
    assert not any(text.startswith(p) for text in texts for p in heldout_only)


def test_paraphrases_are_seeded():
    roles = {"object": "red_cube", "destination": "blue_tray"}
    a = paraphrases("pick_place", roles, 5, np.random.default_rng(3))
    assert a == paraphrases("pick_place", roles, 5, np.random.default_rng(3))
    assert a != paraphrases("pick_place", roles, 5, np.random.default_rng(4))
