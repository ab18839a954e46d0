"""DRC (seed 002, Algorithm 1): a DROO-style actor with a model-based critic, and DNN.

Every slot the actor (an MLP, ReLU hidden layers, sigmoid output, applied to each user's row
of features with the global ones appended, weights shared across users) maps the observed
state to a relaxed placement decision in (0, 1)^(U x 2 S*): per user, ``S*`` stop bits ``I[u, m]``
(step ``m`` runs at the edge; the stop step is their sum, constraint (7)) and ``S*`` store bits
(the stored step ``m'`` is their sum, clipped to the stop step; it counts only if the edge
computes that step, else nothing is stored). Order-preserving quantization (eqs. (36)-(37)) of
the requesting users' entries gives ``K`` binary candidates; the critic scores every candidate
with the per-slot objective (``model.objective``) and keeps the best; ``(state, best
decision)`` goes into a replay memory, and every ``train_interval`` slots the actor takes one
Adam step on the binary cross-entropy (eq. (38)) of a random batch. ``K`` adapts as in DROO:
every ``k_interval`` slots it becomes one more than the largest index of a winning candidate
over that interval. ``dnn`` is the actor alone: one rounded candidate, trained on its own
choices. docs/caching-model.md lists the deviations from Algorithm 1 and DROO.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgediff.cache.config import CacheConfig
from edgediff.cache.model import (
    Slot,
    best_store,
    latencies,
    latency_weight,
    later_delay_per_step,
    objective,
    valid_store,
)
from edgediff.cache.policies import CachePolicy

GLOBAL_FEATURES = 4


@dataclass(frozen=True)
class DrcConfig:
    """Hyper-parameters of the actor and its training (DROO's values where DROO has one)."""

    hidden: tuple[int, int] = (120, 80)
    learning_rate: float = 0.01
    memory_size: int = 1024
    batch_size: int = 128
    train_interval: int = 10
    k_interval: int = 32  # DROO's Delta: how often K adapts
    k_min: int = 1  # the least K may fall to
    model_candidate: bool = True  # (r3) the critic also scores the model's greedy stop steps
    init_std: float = 0.1  # zero-mean normal initialization (Sec. 4.3)


def quantize(relaxed: np.ndarray, k: int) -> np.ndarray:
    """Order-preserving quantization (eqs. (36)-(37)): up to ``k`` binary vectors, shape (k, N).

    The first rounds at 0.5; the others threshold at the entries closest to 0.5, in order.
    """
    x = np.asarray(relaxed, dtype=float)
    thr = x[np.argsort(np.abs(x - 0.5), kind="stable")][: max(k - 1, 0), None]
    rest = (x[None, :] > thr) | ((x[None, :] == thr) & (thr <= 0.5))
    return np.concatenate([(x > 0.5)[None, :], rest])


class Actor(nn.Module):
    def __init__(self, n_in: int, n_out: int, hidden: tuple[int, int], std: float, generator: torch.Generator):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_in, hidden[0]),
            nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
            nn.Linear(hidden[1], n_out),
        )
        with torch.no_grad():
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    layer.weight.normal_(0.0, std, generator=generator)
                    layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # logits; sigmoid applied by the caller/loss
        return self.net(x)


class DrcPolicy(CachePolicy):
    eviction = "value"
    single_candidate = False
    complete_stores = True

    def __init__(self, name: str, cfg: CacheConfig, seed: int = 0, drc: DrcConfig | None = None) -> None:
        super().__init__(name, cfg, seed)
        self.hp = drc or DrcConfig()
        gen = torch.Generator().manual_seed(seed)
        self.s_star = s = cfg.reusable_steps
        self.per_user_in = 3 + 3 * s
        # one network applied to every user's row (its features and the global ones), weights shared
        self.row_in = self.per_user_in + GLOBAL_FEATURES
        n_in = self.row_in * cfg.users
        n_out = cfg.users * 2 * s
        self.actor = Actor(self.row_in, 2 * s, self.hp.hidden, self.hp.init_std, gen)
        self.optimizer = torch.optim.Adam(self.actor.parameters(), lr=self.hp.learning_rate)
        self.loss_fn = nn.BCEWithLogitsLoss(reduction="none")
        size = self.hp.memory_size
        self.mem_x = np.zeros((size, n_in), dtype=np.float32)
        self.mem_y = np.zeros((size, n_out), dtype=np.float32)
        self.mem_mask = np.zeros((size, n_out), dtype=np.float32)
        self.mem_count = 0
        self.rng = np.random.default_rng(seed)
        self.losses: list[float] = []
        self.k = cfg.users * 2 * s + 1  # K starts at its largest, as in DROO
        self.k_history: list[int] = []
        self._winners: list[int] = []
        self._slots_seen = 0
        self._last_x: np.ndarray | None = None
        self._sync_weights()

    # ------------------------------------------------------------------ state
    def features(self, slot: Slot) -> np.ndarray:
        """Per user: requesting, rate, local speed; for each step m = 1..S*, the time offloading up to
        m would save that user alone (with the backlog, no write), the deepest usable cached step
        ``j(m)``, and the log future value of storing step m; then the edge backlog, its jobs, the
        queue and the cache fill."""
        cfg, u, s = self.cfg, slot.users, self.s_star
        f = np.zeros((cfg.users, self.per_user_in), dtype=np.float32)
        f[u, 0] = 1.0
        f[u, 1] = slot.rate / (2e3 * cfg.bandwidth_unit_hz)  # ~1 at either unit of the link (r3)
        f[u, 2] = slot.f_local / cfg.f_max
        each_alone = np.diag(np.ones(slot.n, dtype=np.int64))[None] * np.arange(1, s + 1)[:, None, None]
        alone = latencies(cfg, slot, each_alone, np.asarray(0))
        own = np.diagonal(alone, axis1=1, axis2=2).T  # (n, S*): user r alone offloading to m
        own = own + later_delay_per_step(cfg, slot) * (np.arange(1, s + 1)[None, :] - slot.cached_step[:, 1:])
        local = cfg.steps * cfg.cycles_per_step / slot.f_local
        f[u, 3 : 3 + s] = (local[:, None] - own) / 10.0
        f[u, 3 + s : 3 + 2 * s] = slot.cached_step[:, 1:] / s
        gain = cfg.value_horizon_slots * (slot.value[:, 1:] - slot.value_floor)
        f[u, 3 + 2 * s :] = np.log10(1.0 + np.maximum(gain, 0.0)) / 3
        q = slot.Q / (slot.Q + cfg.V * max(cfg.request_rate, 1.0))
        g = np.array([slot.backlog_s / 5.0, slot.edge_jobs / 10.0, q, slot.cache_fill], dtype=np.float32)
        return np.concatenate([f, np.broadcast_to(g, (cfg.users, GLOBAL_FEATURES))], axis=1).ravel()

    def _sync_weights(self) -> None:
        """Copy the actor's weights to NumPy: a forward pass of this size is faster there."""
        self._weights = [
            (layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy())
            for layer in self.actor.net
            if isinstance(layer, nn.Linear)
        ]

    def _relaxed(self, x: np.ndarray) -> np.ndarray:
        h = x.reshape(self.cfg.users, self.row_in)
        for i, (w, b) in enumerate(self._weights):
            h = h @ w + b
            if i < len(self._weights) - 1:
                h = np.maximum(h, 0.0)
        return 0.5 * (1.0 + np.tanh(0.5 * h))  # the sigmoid, without overflow

    def decode(self, slot: Slot, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Binary candidates ``(K, n, 2 S*)`` to stop steps and stored steps, each ``(K, n)``."""
        m = bits[..., : self.s_star].sum(axis=-1)
        stored = np.minimum(bits[..., self.s_star :].sum(axis=-1), m)
        return m, valid_store(slot, m, stored)

    # ------------------------------------------------------------------ decide
    def decide(self, slot: Slot) -> tuple[np.ndarray, np.ndarray]:
        x = self.features(slot)
        relaxed = self._relaxed(x).reshape(self.cfg.users, 2 * self.s_star)
        mine = relaxed[slot.users].ravel()  # only requesting users' entries are decisions
        k = 1 if self.single_candidate else min(self.k, mine.size + 1)
        cands = quantize(mine, k).reshape(-1, slot.n, 2 * self.s_star)
        m, stored = self.decode(slot, cands)
        k = m.shape[0]
        if self.hp.model_candidate and not self.single_candidate:
            m = np.concatenate([m, self.greedy_steps(slot)[None, :]])
            stored = np.concatenate([stored, np.zeros((1, slot.n), dtype=stored.dtype)])
        if self.complete_stores:  # each candidate's stop steps again, with the best stores for them
            m = np.concatenate([m, m])
            stored = np.concatenate([stored, best_store(self.cfg, slot, m[: m.shape[0] // 2])])
        best = int(np.argmin(objective(self.cfg, slot, m, stored)))
        source = best % (m.shape[0] // 2 if self.complete_stores else m.shape[0])
        self._winners.append(source if source < k else 0)  # K adapts to the quantized candidates only
        self._last_x = x
        return m[best], stored[best]

    def greedy_steps(self, slot: Slot) -> np.ndarray:
        """The model's candidate: requests in turn take the stop step of least added objective given the
        ones before them (``optimum.level_costs`` plus the processor sharing with the jobs chosen so far)."""
        from edgediff.cache.optimum import level_costs

        cost, step = level_costs(self.cfg, slot)
        share = latency_weight(self.cfg, slot) * self.cfg.cycles_per_step / self.cfg.f_es
        running = np.zeros(cost.shape[1])  # running[l]: jobs chosen so far whose work reaches level l
        m = np.zeros(slot.n, dtype=np.int64)
        for r in range(slot.n):
            # adding a job of level e raises sum_l N_l^2 by sum_{l <= e} (2 N_l + 1)
            added = np.concatenate([[0.0], np.cumsum(2.0 * running[1:] + 1.0)]) * share
            e = int(np.argmin(cost[r] + added))
            running[1 : e + 1] += 1
            m[r] = step[r, e]
        return m

    # ------------------------------------------------------------------ learn
    def learn(self, slot: Slot, m: np.ndarray, stored: np.ndarray) -> None:
        cfg, s = self.cfg, self.s_star
        levels = np.arange(1, s + 1)[None, :]
        y = np.zeros((cfg.users, 2 * s), dtype=np.float32)
        y[slot.users, :s] = levels <= m[:, None]
        y[slot.users, s:] = levels <= stored[:, None]
        mask = np.zeros((cfg.users, 2 * s), dtype=np.float32)
        mask[slot.users] = 1.0
        i = self.mem_count % self.hp.memory_size
        self.mem_x[i], self.mem_y[i], self.mem_mask[i] = self._last_x, y.ravel(), mask.ravel()
        self.mem_count += 1
        self._slots_seen += 1
        if self._slots_seen % self.hp.train_interval == 0 and self.mem_count >= self.hp.batch_size:
            self.train_step()
        if not self.single_candidate and self._slots_seen % self.hp.k_interval == 0:
            # DROO's adaptive K: one more than the largest winning index (1-based) of the interval
            self.k = max(max(self._winners) + 2, self.hp.k_min)
            self._winners.clear()
            self.k_history.append(self.k)

    def train_step(self) -> float:
        filled = min(self.mem_count, self.hp.memory_size)
        idx = self.rng.choice(filled, size=self.hp.batch_size, replace=False)
        x, y, mask = (torch.from_numpy(a[idx]) for a in (self.mem_x, self.mem_y, self.mem_mask))
        logits = self.actor(x.view(x.shape[0], self.cfg.users, self.row_in)).reshape(y.shape)
        loss = (self.loss_fn(logits, y) * mask).sum() / mask.sum().clamp(min=1.0)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self._sync_weights()
        value = float(loss.detach())
        self.losses.append(value)
        return value


class DnnPolicy(DrcPolicy):
    """DNN: the actor's rounded output is the decision (no candidate search)."""

    single_candidate = True
    complete_stores = False
