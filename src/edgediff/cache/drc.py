"""DRC (seed 002, Algorithm 1): a DROO-style actor with a model-based critic, and DNN.

Every slot: the actor (an MLP, ReLU hidden layers, sigmoid output) maps the observed state
to a relaxed offloading decision ``I_hat`` in (0, 1)^(U x S*) (``I[u, m] = 1``: step ``m`` of
user ``u``'s request runs at the edge); order-preserving quantization turns it into ``K``
binary candidates; each candidate's stop steps are ``m_u = sum_m I[u, m]`` (constraint (7):
edge steps come first); the critic scores every candidate with the per-slot objective of
``model.objective`` (the store flags, separable given the stop steps, chosen optimally by
``model.best_store``) and keeps the best; ``(state, best decision)`` goes into a replay
memory, and every ``train_interval`` slots the actor takes one Adam step on the binary
cross-entropy (eq. (38)) of a random batch. ``dnn`` is the actor alone: one rounded
candidate, no search (DROO's K = 1 ablation), trained the same way on what it chose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgediff.cache.config import CacheConfig
from edgediff.cache.model import Slot, best_store, objective
from edgediff.cache.policies import CachePolicy

FEATURES_PER_USER = 5


@dataclass(frozen=True)
class DrcConfig:
    """Hyper-parameters of the actor and its training (DROO's values)."""

    hidden: tuple[int, int] = (120, 80)
    learning_rate: float = 0.01
    memory_size: int = 1024
    batch_size: int = 128
    train_interval: int = 10
    candidates: int = 0  # K; 0 = every order-preserving threshold (n S* + 1)
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

    def __init__(self, name: str, cfg: CacheConfig, seed: int = 0, drc: DrcConfig | None = None) -> None:
        super().__init__(name, cfg, seed)
        self.hp = drc or DrcConfig()
        gen = torch.Generator().manual_seed(seed)
        self.s_star = cfg.reusable_steps
        n_in = FEATURES_PER_USER * cfg.users + 1
        self.actor = Actor(n_in, cfg.users * self.s_star, self.hp.hidden, self.hp.init_std, gen)
        self.optimizer = torch.optim.Adam(self.actor.parameters(), lr=self.hp.learning_rate)
        self.loss_fn = nn.BCEWithLogitsLoss(reduction="none")
        size = self.hp.memory_size
        self.mem_x = np.zeros((size, n_in), dtype=np.float32)
        self.mem_y = np.zeros((size, cfg.users * self.s_star), dtype=np.float32)
        self.mem_mask = np.zeros((size, cfg.users * self.s_star), dtype=np.float32)
        self.mem_count = 0
        self.rng = np.random.default_rng(seed)
        self.losses: list[float] = []
        self._slots_seen = 0
        self._last_x: np.ndarray | None = None
        self._sync_weights()

    # ------------------------------------------------------------------ state
    def features(self, slot: Slot) -> np.ndarray:
        """Per user: requesting, rate, local speed, best cached step, value of storing at S*; and Q."""
        cfg, u = self.cfg, slot.users
        f = np.zeros((cfg.users, FEATURES_PER_USER), dtype=np.float32)
        f[u, 0] = 1.0
        f[u, 1] = slot.rate / 2e6
        f[u, 2] = slot.f_local / cfg.f_max
        f[u, 3] = slot.cached_step[:, -1] / self.s_star
        f[u, 4] = np.log10(1e-6 + cfg.value_horizon_slots * np.maximum(slot.value[:, -1] - slot.value_floor, 0)) / 6
        q = slot.Q / (slot.Q + cfg.V * max(cfg.request_rate, 1.0))
        return np.append(f.ravel(), np.float32(q))

    def _sync_weights(self) -> None:
        """Copy the actor's weights to NumPy: a forward pass of this size is faster there."""
        self._weights = [
            (layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy())
            for layer in self.actor.net
            if isinstance(layer, nn.Linear)
        ]

    def _relaxed(self, x: np.ndarray) -> np.ndarray:
        h = x
        for i, (w, b) in enumerate(self._weights):
            h = h @ w + b
            if i < len(self._weights) - 1:
                h = np.maximum(h, 0.0)
        return 0.5 * (1.0 + np.tanh(0.5 * h))  # the sigmoid, without overflow

    # ------------------------------------------------------------------ decide
    def decide(self, slot: Slot) -> tuple[np.ndarray, np.ndarray]:
        x = self.features(slot)
        relaxed = self._relaxed(x).reshape(self.cfg.users, self.s_star)
        mine = relaxed[slot.users].ravel()  # only requesting users' entries are decisions
        k = 1 if self.single_candidate else (self.hp.candidates or mine.size + 1)
        cands = quantize(mine, k).reshape(-1, slot.n, self.s_star)
        m = cands.sum(axis=2)  # (K, n) stop steps
        store = best_store(self.cfg, slot, m)
        best = int(np.argmin(objective(self.cfg, slot, m, store)))
        self._last_x = x
        return m[best], store[best]

    # ------------------------------------------------------------------ learn
    def learn(self, slot: Slot, m: np.ndarray, store: np.ndarray) -> None:
        cfg = self.cfg
        y = np.zeros((cfg.users, self.s_star), dtype=np.float32)
        y[slot.users] = np.arange(1, self.s_star + 1)[None, :] <= m[:, None]
        mask = np.zeros((cfg.users, self.s_star), dtype=np.float32)
        mask[slot.users] = 1.0
        i = self.mem_count % self.hp.memory_size
        self.mem_x[i], self.mem_y[i], self.mem_mask[i] = self._last_x, y.ravel(), mask.ravel()
        self.mem_count += 1
        self._slots_seen += 1
        if self._slots_seen % self.hp.train_interval == 0 and self.mem_count >= self.hp.batch_size:
            self.train_step()

    def train_step(self) -> float:
        filled = min(self.mem_count, self.hp.memory_size)
        idx = self.rng.choice(filled, size=self.hp.batch_size, replace=False)
        x, y, mask = (torch.from_numpy(a[idx]) for a in (self.mem_x, self.mem_y, self.mem_mask))
        loss = (self.loss_fn(self.actor(x), y) * mask).sum() / mask.sum().clamp(min=1.0)
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
