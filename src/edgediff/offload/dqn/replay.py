"""Prioritized experience replay (Schaul et al., 2016) with the paper's terminal split.

No maintained PER fits cleanly here: torchrl's buffer needs tensordict and pins torch
versions, Stable-Baselines3 has none. So: a NumPy sum tree (vectorized sampling and
updates) under a ring buffer, and two of them, one for terminal and one for non-terminal
transitions, sampled in the paper's 1:7 ratio.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """Binary tree over ``capacity`` leaves whose inner nodes hold the sum of their children."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.leaf_base = 1 << int(np.ceil(np.log2(capacity)))
        self.tree = np.zeros(2 * self.leaf_base)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def leaves(self, index) -> np.ndarray:
        return self.tree[self.leaf_base + np.asarray(index)]

    def update(self, index, value) -> None:
        """Set the leaves ``index`` to ``value`` (a later duplicate index wins)."""
        node = self.leaf_base + np.asarray(index, dtype=np.int64)
        self.tree[node] = value
        while node[0] > 1:  # all leaves share one depth, so each level is one array
            node = np.unique(node // 2)
            self.tree[node] = self.tree[2 * node] + self.tree[2 * node + 1]

    def find(self, mass) -> np.ndarray:
        """Leaf index where the prefix sum of leaf values first exceeds each ``mass``."""
        mass = np.array(mass, dtype=float)
        node = np.ones(mass.shape, np.int64)
        while node[0] < self.leaf_base:
            left = 2 * node
            go_right = mass >= self.tree[left]
            mass = np.where(go_right, mass - self.tree[left], mass)
            node = np.where(go_right, left + 1, left)
        return np.minimum(node - self.leaf_base, self.capacity - 1)


class PrioritizedReplay:
    """Ring buffer of transitions ``(obs, action, reward, next_obs, done)`` with priorities.

    Sampling probability ``P(j) = p_j / sum p``; importance weights
    ``w_j = (size P(j))^-beta / max w``; new transitions get the largest priority seen.
    """

    def __init__(self, capacity: int, obs_size: int, *, priority_exponent: float, priority_offset: float):
        self.capacity = capacity
        self.tree = SumTree(capacity)
        self.obs = np.zeros((capacity, obs_size), np.float32)
        self.next_obs = np.zeros((capacity, obs_size), np.float32)
        self.action = np.zeros(capacity, np.int64)
        self.reward = np.zeros(capacity, np.float32)
        self.done = np.zeros(capacity, np.float32)
        self.priority_exponent = priority_exponent
        self.priority_offset = priority_offset
        self.max_priority = 1.0
        self.size = 0
        self.cursor = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward, next_obs, done) -> None:
        n = len(action)
        index = (self.cursor + np.arange(n)) % self.capacity
        self.obs[index], self.next_obs[index] = obs, next_obs
        self.action[index], self.reward[index], self.done[index] = action, reward, done
        self.tree.update(index, self.max_priority)
        self.cursor = int((self.cursor + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, beta: float, rng: np.random.Generator):
        """``(index, weights, (obs, action, reward, next_obs, done))`` of a stratified sample."""
        total = self.tree.total
        bounds = np.linspace(0.0, total, batch_size + 1)
        index = self.tree.find(rng.uniform(bounds[:-1], bounds[1:]))
        index = np.minimum(index, self.size - 1)
        probability = self.tree.leaves(index) / total
        weights = (self.size * np.maximum(probability, 1e-12)) ** -beta
        weights /= weights.max()
        batch = (self.obs[index], self.action[index], self.reward[index], self.next_obs[index], self.done[index])
        return index, weights.astype(np.float32), batch

    def update_priorities(self, index, td_error) -> None:
        priority = (np.abs(td_error) + self.priority_offset) ** self.priority_exponent
        self.tree.update(index, priority)
        self.max_priority = max(self.max_priority, float(priority.max()))
