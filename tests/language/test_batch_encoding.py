"""Encoding many strings at once: the same features as one at a time, to float rounding."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from vla_sim.language.encoder import (
    HashingTextEncoder,
    encoder_fingerprint,
    get_text_encoder,
)

TEXTS = ["pick up the red cube and put it in the blue bowl", "reach the green cube",
         "stack the yellow cube on the purple cube",
         "place the crimson block into the blue container", "push it"]


def test_batched_minilm_features_match_one_at_a_time_and_keep_each_strings_length():
    encoder = get_text_encoder()
    calls = encoder.num_model_calls
    each = encoder.encode_each(TEXTS, batch_size=2)
    assert encoder.num_model_calls == calls + 3  # 5 strings in batches of 2
    for text, (pooled, tokens, mask) in zip(TEXTS, each):
        p1, t1, m1 = encoder._encode_one(text)
        assert tokens.shape == t1.shape and mask.tolist() == m1.tolist()
        np.testing.assert_allclose(pooled, p1, atol=1e-5)
        np.testing.assert_allclose(tokens, t1, atol=1e-5)
    batched = encoder.batch_features(TEXTS + TEXTS[:1], max_tokens=16)
    single = encoder.features(TEXTS + TEXTS[:1], max_tokens=16)
    for key, value in single.items():
        np.testing.assert_allclose(batched[key], value, atol=1e-5)


def test_hashing_encoder_batches_exactly():
    enc = HashingTextEncoder()
    for key, value in enc.features(TEXTS, 8).items():
        np.testing.assert_array_equal(enc.batch_features(TEXTS, 8)[key], value)


def test_fingerprints_name_the_encoder_without_loading_it():
    assert encoder_fingerprint() == get_text_encoder().fingerprint
    assert encoder_fingerprint("hashing") == HashingTextEncoder().fingerprint
    assert len({encoder_fingerprint(m) for m in ("default", "hashing", "org/other-model")}) == 3


def test_minilm_loaded_through_the_bert_classes_equals_the_auto_classes():
    import torch
    from transformers import AutoModel, AutoTokenizer

    from vla_sim.language.encoder import _model_classes, default_model_path

    source = default_model_path()
    model_cls, tokenizer_cls = _model_classes(source)
    assert model_cls.__name__ == "BertModel"  # the fast path is taken for the default encoder
    pairs = [(tokenizer_cls, model_cls), (AutoTokenizer, AutoModel)]
    outs = []
    for tok_cls, net_cls in pairs:
        tok = tok_cls.from_pretrained(str(source), local_files_only=True)
        net = net_cls.from_pretrained(str(source), local_files_only=True).eval()
        batch = tok(TEXTS, padding=True, return_tensors="pt")
        with torch.no_grad():
            outs.append((batch["input_ids"], net(**batch).last_hidden_state))
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])
