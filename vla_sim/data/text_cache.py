"""Instruction features cached beside a dataset, so that training needs neither the text
encoder's weights nor ``transformers``: a machine with only torch and the dataset folder trains.

``<root>/.cache/text_<fingerprint>.safetensors`` holds, per distinct string, the encoder's
pooled vector and its per-token states (each string's own token count), keyed by the string
itself; ``<fingerprint>`` names the encoder and its weights
(:func:`vla_sim.language.encoder.encoder_fingerprint`), so features of another encoder are never
served. The file is written atomically (temp file, rename) and records a SHA-256 of its
contents: a modified, truncated or foreign file is ignored (and rewritten where the encoder is
available), never trained on.

:class:`CachedTextEncoder` serves ``features`` / ``encode`` like a
:class:`~vla_sim.language.encoder.TextEncoder`. Strings the cache lacks are encoded in batches
and added to it when the encoder can load; where it cannot, :class:`MissingTextFeatures` names
them and the command that computes them (``vla-sim dataset cache-text``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vla_sim.data import format as fmt
from vla_sim.language.encoder import encoder_fingerprint, pad_features
from vla_sim.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)

CACHE_FORMAT = "1"  # bump when the file's layout changes: older files are ignored

Entry = tuple[np.ndarray, np.ndarray]
"""(pooled (D,), tokens (L, D)) of one string; its mask is L ones."""


class MissingTextFeatures(ValueError):
    """Strings without cached features, and no text encoder here to compute them."""


def text_cache_path(root: str | Path, fingerprint: str) -> Path:
    return Path(root) / fmt.CACHE_DIR / f"text_{fingerprint}.safetensors"


def _digest(strings: list[str], pooled: np.ndarray, tokens: np.ndarray,
            offsets: np.ndarray) -> str:
    h = hashlib.sha256(json.dumps(strings).encode())
    for arr in (pooled, tokens, offsets):
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def read_text_cache(path: str | Path, fingerprint: str) -> tuple[dict[str, Entry], str | None]:
    """(string -> features, None) from a valid cache file; ({}, why not) otherwise."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        return {}, "no cache file"
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
        arrays = load_file(str(path))
        strings = json.loads(meta.get("strings", "null"))
    except Exception as exc:  # noqa: BLE001 - truncated, not safetensors, bad JSON: ignored
        return {}, f"unreadable ({type(exc).__name__})"
    if meta.get("format") != CACHE_FORMAT:
        return {}, "written by another vla-sim version"
    if meta.get("fingerprint") != fingerprint:
        return {}, f"features of another encoder ({meta.get('fingerprint')})"
    try:
        pooled, tokens, offsets = arrays["pooled"], arrays["tokens"], arrays["offsets"]
    except KeyError as exc:
        return {}, f"no {exc.args[0]!r} array"
    ok = (isinstance(strings, list) and all(isinstance(s, str) for s in strings)
          and pooled.ndim == 2 and tokens.ndim == 2 and offsets.ndim == 1
          and len(pooled) == len(strings) == len(offsets) - 1
          and tokens.shape[1] == pooled.shape[1] and offsets[0] == 0
          and offsets[-1] == len(tokens) and bool(np.all(np.diff(offsets) > 0)))
    if not ok:
        return {}, "inconsistent arrays"
    if _digest(strings, pooled, tokens, offsets) != meta.get("sha256"):
        return {}, "its contents do not match the checksum recorded when it was written"
    if not (np.isfinite(pooled).all() and np.isfinite(tokens).all()):
        return {}, "non-finite values"
    return {s: (pooled[i], tokens[offsets[i]:offsets[i + 1]])
            for i, s in enumerate(strings)}, None


def write_text_cache(path: str | Path, fingerprint: str, entries: dict[str, Entry]) -> None:
    """Write ``entries`` (sorted by string) atomically, with their checksum."""
    from safetensors.numpy import save

    strings = sorted(entries)
    if not strings:
        return
    pooled = np.stack([entries[s][0] for s in strings]).astype(np.float32)
    tokens = np.concatenate([entries[s][1] for s in strings]).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum([len(entries[s][1]) for s in strings])]
                             ).astype(np.int64)
    meta = {"format": CACHE_FORMAT, "fingerprint": fingerprint, "strings": json.dumps(strings),
            "sha256": _digest(strings, pooled, tokens, offsets)}
    atomic_write_bytes(Path(path), save({"pooled": pooled, "tokens": tokens,
                                         "offsets": offsets}, metadata=meta))
    os.chmod(path, 0o644)  # readable like the frame cache beside it (temp files are 0600)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime in ns) of a file; None when there is none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class CachedTextEncoder:
    """Text features from the feature caches of one or more datasets (``roots``).

    Args:
        roots: dataset folders; strings are looked up in all of their caches, and the ones
            none has are encoded and added to the first one's.
        model: the encoder's name (a ``VLAPolicyConfig.text_encoder`` value).
        encoder: the live encoder to compute missing strings with; default
            ``get_text_encoder(model)``, loaded only when a string is missing.
        write: add newly encoded strings to the first root's cache (a read-only folder only
            logs a warning).
        hint: how to precompute the strings on a machine with the encoder (named in the error
            when a string is missing here).
    """

    def __init__(self, roots: Sequence[str | Path], model: str = "default", encoder: Any = None,
                 write: bool = True, batch_size: int = 64, hint: str | None = None):
        self.roots = [Path(r) for r in roots]
        if not self.roots:
            raise ValueError("CachedTextEncoder needs at least one dataset folder")
        self.model, self.write, self.batch_size = str(model), write, int(batch_size)
        self._encoder = encoder
        self.fingerprint = (encoder.fingerprint if encoder is not None and
                            hasattr(encoder, "fingerprint") else encoder_fingerprint(self.model))
        self.hint = hint or f"vla-sim dataset cache-text {self.roots[0]}"
        self.status: dict[str, str] = {}  # cache file -> "N strings" / "ignored (why)" / ...
        self.num_encoded = 0  # strings this object computed (not served from a cache)
        self._entries: dict[str, Entry] = {}
        # Per cache file: its entries and the (inode, size, mtime) they were read at or
        # written with. A file whose stamp is unchanged is not read again: DAgger adds a few
        # strings every round, and re-reading and checking the whole file (~90 MB at 900
        # episodes) twice each time cost the round ~1 s.
        self._files: dict[str, tuple[tuple | None, dict[str, Entry]]] = {}
        self._load()

    def _read(self, path: Path) -> tuple[dict[str, Entry], str | None]:
        """``read_text_cache(path)``, or what was last read or written there when the file is
        unchanged since (an atomic write replaces the file: new inode and times)."""
        stamp = _stamp(path)
        held = self._files.get(str(path))
        if stamp is not None and held is not None and held[0] == stamp:
            return held[1], None
        entries, problem = read_text_cache(path, self.fingerprint)
        self._files[str(path)] = (None if problem else stamp, entries)
        return entries, problem

    def _load(self) -> None:
        """Read every root's cache (again where it changed: another process may have added
        strings)."""
        for root in self.roots:
            path = self.path(root)
            entries, problem = self._read(path)
            if problem and path.exists() and self.status.get(str(path)) != f"ignored ({problem})":
                log.warning("%s: %s; ignoring it", path, problem)
            self.status[str(path)] = f"ignored ({problem})" if problem else \
                f"{len(entries)} strings"
            for text, value in entries.items():
                self._entries.setdefault(text, value)

    def path(self, root: str | Path | None = None) -> Path:
        return text_cache_path(self.roots[0] if root is None else root, self.fingerprint)

    @property
    def dim(self) -> int:
        if self._entries:
            return int(next(iter(self._entries.values()))[0].shape[0])
        return int(self._live().dim)

    def missing(self, texts: Sequence[str]) -> list[str]:
        """The distinct strings of ``texts`` without features here, in first-seen order."""
        return [t for t in dict.fromkeys(texts) if t not in self._entries]

    def _live(self) -> Any:
        if self._encoder is None:
            from vla_sim.language.encoder import get_text_encoder

            self._encoder = get_text_encoder(self.model)
        return self._encoder

    def ensure(self, texts: Sequence[str]) -> int:
        """Make sure every string of ``texts`` has features (encoding the missing ones in
        batches and adding them to the first cache); returns how many were encoded."""
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"instructions must be str, got {type(t).__name__}: {t!r}")
        missing = self.missing(texts)
        if missing:  # written since this object read the caches (e.g. by rank 0)?
            self._load()
            missing = self.missing(texts)
        if not missing:
            return 0
        try:
            encoded = self._live().encode_each(missing, self.batch_size)
        except (ImportError, OSError, ValueError) as exc:  # no transformers, no weights
            shown = ", ".join(repr(s) for s in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise MissingTextFeatures(
                f"{len(missing)} instruction strings have no cached features for text encoder "
                f"{self.model!r} in {self.path()} ({self.status.get(str(self.path()))}), and "
                f"the encoder cannot load here ({type(exc).__name__}: {exc}). Compute them on "
                f"a machine that has it, with the same settings as this run: {self.hint}. "
                f"Missing: {shown}{more}") from None
        new = {t: (np.asarray(p, np.float32), np.asarray(tok, np.float32))
               for t, (p, tok, _mask) in zip(missing, encoded)}
        self._entries.update(new)
        self.num_encoded += len(new)
        if self.write:
            path = self.path()
            try:
                # Re-read first: another run may have added strings since this one started.
                merged = {**self._read(path)[0], **new}
                write_text_cache(path, self.fingerprint, merged)
                self._files[str(path)] = (_stamp(path), merged)
                self.status[str(path)] = f"{len(merged)} strings"
            except OSError as exc:
                log.warning("could not write the text feature cache %s (%s); the features "
                            "are kept for this run only", path, exc)
        return len(new)

    # ----------------------------------------------------------- TextEncoder interface
    def features(self, instructions: Sequence[str], max_tokens: int,
                 batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Like :meth:`TextEncoder.features` (tokens cut or zero-padded to ``max_tokens``)."""
        if isinstance(instructions, str):
            raise TypeError("features() takes a list of strings; wrap a single one in a list")
        self.ensure(instructions)
        items = [(p, t, np.ones(len(t), np.float32))
                 for p, t in (self._entries[s] for s in instructions)]
        dim = items[0][0].shape[0] if items else self.dim
        return pad_features(items, max_tokens, dim)

    batch_features = features

    def encode(self, instructions: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like :meth:`TextEncoder.encode`: (pooled, tokens, mask) padded to the longest."""
        if isinstance(instructions, str):
            raise TypeError("encode() takes a list of strings; wrap a single one in a list")
        self.ensure(instructions)
        length = max((len(self._entries[s][1]) for s in instructions), default=0)
        feats = self.features(instructions, length)
        return (feats["instruction_embedding"], feats["instruction_tokens"],
                feats["instruction_mask"])


__all__ = ["CachedTextEncoder", "MissingTextFeatures", "read_text_cache", "text_cache_path",
           "write_text_cache"]
