import numpy as np
import pytest

from edgediff.offload.dqn.replay import PrioritizedReplay, SumTree


def test_sum_tree_totals_and_duplicate_updates():
    tree = SumTree(5)
    tree.update([0, 1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert tree.total == 15.0
    tree.update([1, 1, 4], [9.0, 0.5, 0.0])  # the later duplicate wins
    assert tree.total == pytest.approx(1 + 0.5 + 3 + 4)
    np.testing.assert_array_equal(tree.leaves([0, 1, 4]), [1.0, 0.5, 0.0])


def test_sum_tree_find_matches_prefix_sums():
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 3, 37) * (rng.random(37) > 0.3)
    tree = SumTree(37)
    tree.update(np.arange(37), values)
    mass = rng.uniform(0, values.sum(), 500)
    expected = np.searchsorted(np.cumsum(values), mass, side="right")
    np.testing.assert_array_equal(tree.find(mass), expected)


def test_prioritized_sampling_follows_priorities():
    memory = PrioritizedReplay(4, 2, priority_exponent=1.0, priority_offset=0.0)
    obs = np.zeros((4, 2), np.float32)
    memory.add(obs, np.arange(4), np.zeros(4), obs, np.zeros(4))
    memory.update_priorities(np.arange(4), np.array([1.0, 1.0, 2.0, 4.0]))
    rng = np.random.default_rng(1)
    counts = np.zeros(4)
    for _ in range(200):
        index, weights, _ = memory.sample(8, 0.3, rng)
        counts += np.bincount(index, minlength=4)
        assert weights.max() == pytest.approx(1.0) and weights.min() > 0
    np.testing.assert_allclose(counts / counts.sum(), [0.125, 0.125, 0.25, 0.5], atol=0.03)


def test_ring_buffer_overwrites_oldest_and_new_items_get_max_priority():
    memory = PrioritizedReplay(3, 1, priority_exponent=0.7, priority_offset=2e-5)
    memory.add(np.zeros((2, 1)), [0, 0], [1.0, 2.0], np.zeros((2, 1)), [0, 0])
    memory.update_priorities([0, 1], np.array([10.0, 0.0]))
    memory.add(np.zeros((2, 1)), [1, 1], [3.0, 4.0], np.zeros((2, 1)), [0, 1])
    assert len(memory) == 3 and memory.reward.tolist() == [4.0, 2.0, 3.0]
    top = (10.0 + 2e-5) ** 0.7
    np.testing.assert_allclose(memory.tree.leaves([0, 2]), [top, top])
