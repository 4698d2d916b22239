"""The instruction-feature cache beside a dataset: what the encoder gives, served without it."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from vla_sim.data.text_cache import (
    CachedTextEncoder,
    MissingTextFeatures,
    read_text_cache,
    text_cache_path,
)
from vla_sim.language.encoder import HashingTextEncoder, encoder_fingerprint

TEXTS = ["put the red cube in the blue tray", "reach the green sphere", "stack the cube"]


class Unavailable(HashingTextEncoder):
    """An encoder whose model cannot load here (no transformers, no weights)."""

    def _encode_batch(self, texts):
        raise ImportError("import of transformers halted; None in sys.modules")


def test_cached_features_equal_the_encoders_and_a_second_reader_needs_no_encoder(tmp_path):
    enc = HashingTextEncoder()
    cache = CachedTextEncoder([tmp_path], "hashing", encoder=enc)
    got = cache.features(TEXTS + TEXTS[:1], max_tokens=8)
    want = enc.features(TEXTS + TEXTS[:1], max_tokens=8)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    assert cache.num_encoded == 3 and text_cache_path(tmp_path, enc.fingerprint).is_file()

    again = CachedTextEncoder([tmp_path], "hashing", encoder=Unavailable())
    for key, value in again.features(TEXTS, max_tokens=8).items():
        np.testing.assert_array_equal(value, want[key][:3])
    pooled, tokens, _mask = again.encode(TEXTS)
    np.testing.assert_array_equal(pooled, enc.encode(TEXTS)[0])
    np.testing.assert_array_equal(tokens, enc.encode(TEXTS)[1])
    assert again.num_encoded == 0


def test_new_strings_are_added_to_the_cache(tmp_path):
    CachedTextEncoder([tmp_path], "hashing").features(TEXTS[:1], 8)
    cache = CachedTextEncoder([tmp_path], "hashing")
    assert cache.missing(TEXTS) == TEXTS[1:]
    assert cache.ensure(TEXTS) == 2
    entries, problem = read_text_cache(cache.path(), encoder_fingerprint("hashing"))
    assert problem is None and sorted(entries) == sorted(TEXTS)


def test_strings_missing_without_the_encoder_are_named_with_the_command(tmp_path):
    CachedTextEncoder([tmp_path], "hashing").features(TEXTS[:1], 8)
    cache = CachedTextEncoder([tmp_path], "hashing", encoder=Unavailable(),
                              hint="vla-sim dataset cache-text DATA --instruction-aug 8")
    cache.features(TEXTS[:1], 8)  # cached: fine
    with pytest.raises(MissingTextFeatures, match=r"2 instruction strings .*cannot load here "
                                                  r".*cache-text DATA --instruction-aug 8.*"
                                                  r"'reach the green sphere'"):
        cache.features(TEXTS, 8)


def test_a_modified_cache_is_ignored_and_rewritten(tmp_path, caplog):
    cache = CachedTextEncoder([tmp_path], "hashing")
    want = cache.features(TEXTS, 8)
    path = cache.path()
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF  # a float inside the token states
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING):
        again = CachedTextEncoder([tmp_path], "hashing")
    assert "checksum" in caplog.text and str(path) in caplog.text
    assert again.missing(TEXTS) == TEXTS
    for key, value in again.features(TEXTS, 8).items():
        np.testing.assert_array_equal(value, want[key])
    assert read_text_cache(path, encoder_fingerprint("hashing"))[1] is None  # rewritten


def test_features_of_another_encoder_are_never_served(tmp_path):
    CachedTextEncoder([tmp_path], "hashing").features(TEXTS, 8)
    path = text_cache_path(tmp_path, encoder_fingerprint("hashing"))
    entries, problem = read_text_cache(path, encoder_fingerprint("default"))
    assert entries == {} and "another encoder" in problem
    assert encoder_fingerprint("default") != encoder_fingerprint("hashing")
    for bad in (b"", b"not safetensors at all"):
        path.write_bytes(bad)
        assert read_text_cache(path, encoder_fingerprint("hashing"))[1].startswith("unreadable")


def test_strings_are_looked_up_in_every_dataset_and_added_to_the_first(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    CachedTextEncoder([second], "hashing").features(TEXTS[1:], 8)
    cache = CachedTextEncoder([first, second], "hashing")
    assert cache.ensure(TEXTS) == 1  # only TEXTS[0]: the rest are in the second cache
    assert sorted(read_text_cache(cache.path(first), cache.fingerprint)[0]) == TEXTS[:1]


def test_an_unchanged_cache_file_is_not_read_again_and_a_changed_one_is(tmp_path, monkeypatch):
    import vla_sim.data.text_cache as tc

    reads = []
    real = tc.read_text_cache
    monkeypatch.setattr(tc, "read_text_cache", lambda *a: reads.append(1) or real(*a))
    cache = CachedTextEncoder([tmp_path], "hashing")
    cache.ensure(TEXTS[:1])  # no file yet: read at start and before the first write
    start = len(reads)
    cache.ensure(TEXTS[1:2])  # its own file, unchanged since it wrote it: not read again
    assert len(reads) == start
    other = CachedTextEncoder([tmp_path], "hashing")  # another run adds a string
    other.ensure(["push the blue cube"])
    cache.ensure(TEXTS[2:])  # the file changed under it: read, and the other's string kept
    assert len(reads) > start + 1
    entries, problem = real(cache.path(), cache.fingerprint)
    assert problem is None and sorted(entries) == sorted(TEXTS + ["push the blue cube"])
