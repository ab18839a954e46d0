"""Fig. 7 (denoised outputs per caching policy): reuse as the paper's eqs. (1)-(2) see it."""

from types import SimpleNamespace

import numpy as np
import pytest

from edgediff.personalize.cache_quality import class_request, request_outputs, sampled_requests, topic_neighbour


@pytest.mark.slow
def test_reuse_replays_the_entry_then_the_request_own_prompt(tiny):
    steps = 4
    own, neighbour = 3, 14  # different digits: a topic hit starts from another prompt's latent
    outputs, final, no_cache = request_outputs(tiny, [(own, 0, own), (own, 2, own), (own, 2, neighbour)], steps, 3.0)
    assert outputs.shape[:2] == (3, steps + 1)
    # a hit on the class's own entry is the output the request would have computed itself
    np.testing.assert_allclose(outputs[1], outputs[0])
    np.testing.assert_allclose(final[1], no_cache[1])
    # a topic hit: D_0..D_2 are the neighbour's (its noise and prompt), then the request's prompt
    alone, _, _ = request_outputs(tiny, [(neighbour, 0, neighbour)], steps, 3.0)
    np.testing.assert_allclose(outputs[2, :3], alone[0, :3], atol=1e-6)
    assert not np.allclose(outputs[2, 3:], alone[0, 3:])
    assert not np.allclose(final[2], no_cache[2])
    assert class_request(own)[0] != class_request(neighbour)[0]


def test_topic_neighbour_is_another_class_of_the_topic():
    topic = np.array([0, 1, 0, 1, 0])
    assert topic_neighbour(topic, 2) == 0 and topic_neighbour(topic, 0) == 2 and topic_neighbour(topic, 3) == 1
    assert topic_neighbour(np.array([0, 1]), 1) == 1  # alone in its topic: itself


def test_sampled_requests_name_the_reused_entry_class():
    run = SimpleNamespace(
        latency=np.zeros(4), reused_step=np.array([0, 2, 6, 1]), shared_hit=np.array([False, True, False, True])
    )
    topic = np.array([0, 0, 1, 1, 0])
    got = sampled_requests(run, topic, np.array([4, 0, 2, 3]), samples=4, seed=0)
    assert got == [(4, 0, 4), (0, 2, 1), (2, 6, 2), (3, 1, 2)]  # a topic hit reuses a neighbour's entry
    assert len(sampled_requests(run, topic, np.array([4, 0, 2, 3]), samples=9, seed=0)) == 4


@pytest.mark.slow
def test_reproduce_cache_fig7_quick(tmp_path):
    from edgediff.reproduce import reproduce

    paths = reproduce("cache-fig7", tmp_path, quick=True, seed=0)
    assert sorted(p.name for p in paths) == ["cache-fig7.csv", "cache-fig7.md", "cache-fig7.png"]
    rows = (tmp_path / "cache-fig7.csv").read_text().splitlines()
    assert rows[0].startswith("policy,step,psnr_db") and len(rows) == 1 + (3 + 2) * 6  # 3 policies + 2 topic-hit rows
    ncldc = [r.split(",") for r in rows[1:] if r.startswith("ncldc")]
    assert all(r[6] == "0" for r in ncldc)  # all local: nothing reused
