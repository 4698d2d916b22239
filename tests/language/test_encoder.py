"""The pretrained text encoder: verified weights, offline load, cache, shapes."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the packaged weights must load with no network

import numpy as np
import pytest

from vla_sim.language.encoder import (
    DEFAULT_WEIGHTS_SIZE,
    EMBED_DIM,
    HashingTextEncoder,
    TextEncoder,
    WeightsVerificationError,
    default_model_path,
    get_text_encoder,
    verify_default_weights,
)

RED_TO_BOWL = "pick up the red cube and put it in the blue bowl"
PARAPHRASE = "place the crimson block into the blue container"
STACK = "stack the yellow cube on the purple cube"


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return get_text_encoder()


def test_packaged_weights_verify():
    verify_default_weights()  # default folder
    verify_default_weights(default_model_path() / "model.safetensors")  # the file itself


def test_weights_with_wrong_size_are_refused(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not a model")
    with pytest.raises(WeightsVerificationError, match="size"):
        verify_default_weights(tmp_path)


def test_weights_with_right_size_but_wrong_bytes_are_refused(tmp_path):
    with open(tmp_path / "model.safetensors", "wb") as f:
        f.truncate(DEFAULT_WEIGHTS_SIZE)  # same size, all zeros
    with pytest.raises(WeightsVerificationError, match="SHA-256"):
        verify_default_weights(tmp_path)


def test_missing_weights_are_refused(tmp_path):
    with pytest.raises(WeightsVerificationError, match="not found"):
        verify_default_weights(tmp_path)


def test_encode_shapes_and_normalisation(encoder):
    pooled, tokens, mask = encoder.encode([RED_TO_BOWL, "reach the green cube"])
    assert pooled.shape == (2, EMBED_DIM) and pooled.dtype == np.float32
    assert tokens.shape[0] == 2 and tokens.shape[2] == EMBED_DIM
    assert mask.shape == tokens.shape[:2]
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-5)
    assert mask[0].sum() > mask[1].sum()  # the shorter sentence is padded
    assert np.all(tokens[1][mask[1] == 0] == 0)


def test_identical_strings_give_identical_and_different_strings_different_embeddings(encoder):
    pooled, _, _ = encoder.encode([RED_TO_BOWL, RED_TO_BOWL, STACK])
    np.testing.assert_array_equal(pooled[0], pooled[1])
    assert float(pooled[0] @ pooled[2]) < 0.99


def test_embedding_does_not_depend_on_batch_companions(encoder):
    alone = encoder.encode([STACK])[0][0]
    with_other = encoder.encode([RED_TO_BOWL, STACK])[0][1]
    np.testing.assert_array_equal(alone, with_other)


def test_pooled_cosine_ranks_an_unrelated_instruction_above_a_paraphrase(encoder):
    # Measured (DESIGN.md): mean pooling is a weak signal for *which object*. This documents it
    # so that a policy or reward is never built on the pooled vector alone.
    pooled, _, _ = encoder.encode([RED_TO_BOWL, PARAPHRASE, STACK])
    assert float(pooled[0] @ pooled[2]) > float(pooled[0] @ pooled[1])


def test_cache_hit_does_not_run_the_model(encoder):
    encoder.encode(["push the orange cube to the left"])
    calls = encoder.num_model_calls
    encoder.encode(["push the orange cube to the left"] * 3)
    assert encoder.num_model_calls == calls


def test_features_pad_and_truncate_to_max_tokens(encoder):
    feats = encoder.features([RED_TO_BOWL, "reach"], max_tokens=8)
    assert feats["instruction_tokens"].shape == (2, 8, EMBED_DIM)
    assert feats["instruction_mask"].tolist()[0] == [1.0] * 8  # truncated
    assert feats["instruction_mask"][1].sum() == 3  # [CLS] reach [SEP]
    full = encoder.features([RED_TO_BOWL], max_tokens=32)
    np.testing.assert_array_equal(full["instruction_tokens"][0, :8],
                                  feats["instruction_tokens"][0])


def test_encode_rejects_a_bare_string(encoder):
    with pytest.raises(TypeError, match="list"):
        encoder.encode(RED_TO_BOWL)


def test_hashing_encoder_is_deterministic_and_word_sensitive():
    enc = HashingTextEncoder(dim=16)
    a = enc.features(["red cube", "blue cube"], max_tokens=4)
    b = HashingTextEncoder(dim=16).features(["red cube"], max_tokens=4)
    np.testing.assert_array_equal(a["instruction_tokens"][0], b["instruction_tokens"][0])
    assert not np.allclose(a["instruction_embedding"][0], a["instruction_embedding"][1])
