"""The paper's MDP for request handling (Sec. V-C-1) as a Gymnasium environment.

One episode decides one window: users are handled one per step in their given order; the
action grants (1) or denies (0) the current user's request. The state is the paper's:

- a local sub-state ``[alpha_i, L_i(1), k_i; o_i]`` per user (``k_i`` the request time),
  with the four-valued indicator ``o_i`` (0 pending, 1 current, 2 granted, 3 denied),
  cyclically shifted so the current user comes first and padded to ``max_users`` with
  denied all-zero users;
- a global sub-state ``[B_max, k_e/G, h_e; pending, granted, denied]``.

The episode ends when every user is handled or when ``B_max`` users are granted (the rest
are denied: constraint-aware termination). The split point of each granted user is solved
inside the environment (closed form of ``offload.split`` for the current batch size), and
the reward back-propagation of eq. (21) makes the rewards of an episode add up to its
objective: each non-final step earns ``alpha_t F(n_t)`` (with ``n_t`` the split at the
batch size reached so far, or ``N`` if denied), the final step the objective of the final
decision minus everything earned before. All rewards are multiplied by ``reward_scale``.

``features="set"`` (beyond the paper; docs/offloading-model.md, "Windows of any size") is a
state for a network whose input does not fix the user count: a row for the current user and for
each of the (at most 16) pending users of largest gain at the next batch size,
``[alpha, L_i(1), k_i, d_i/N, gain_i(b+1), gain_i(b+1) - gain_current(b+1), valid; current]``
(``d_i`` the cached steps, ``b`` the users granted so far), and size-free globals: counts as
logarithms and ratios (slots left, users pending, granted; pending users with a larger gain than
the current one's, with a positive gain), the edge, the value change of granting the current
user and what the granted users lose if one more joins. With it the environment also denies, without
a step, every user whose gain at the next batch size is not positive (such a grant never beats
the same decision without it: gains fall with the batch size) and every user that is among the
best ``b`` at no batch size ``b`` (:func:`candidates`), so no optimum is lost.

``EpisodeBatch`` is the vectorized core (many episodes at once, used by training and the
policy); ``OffloadEnv`` is the Gymnasium face of one episode.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import gymnasium as gym
import numpy as np

from edgediff.core.generator import random_instance
from edgediff.core.instance import Instance
from edgediff.core.scenario import Scenario, draw_instance
from edgediff.offload.exact import denied_utility, gain_table, gains_fall_with_batch_size

PENDING, CURRENT, GRANTED, DENIED = 0, 1, 2, 3
NUM_INDICATORS = 4
LOCAL_FEATURES = 3  # alpha, L_i(1), request time
GLOBAL_FEATURES = 6  # B_max, k_e/G, h_e, pending, granted, denied
SCOPES = ("general", "gpu", "specific")
STATE_SCALINGS = ("raw", "unit")
REWARDS = ("paper", "marginal")
FEATURES = ("paper", "convex", "set")
# features="set": per-user columns (the indicator follows them) and global features
SET_USER_FEATURES = 7  # alpha, L_i(1), request time, d_i / N, gain(b+1), gain(b+1) - current's, valid
SET_VALID = 6  # column of the valid flag (0 for the padding rows)
SET_GLOBAL_FEATURES = 10  # log slots left, pending, granted; slots/pending; k_e/G, h_e; grant change, loss;
# log of the pending users with a gain above the current user's, and with a positive gain
SET_ROWS = 17  # the current user and the 16 pending users of largest gain at the next batch size

# "unit" state scaling divides each feature by a typical magnitude under the paper's
# distribution (alpha up to ~70, L_i(1) 0.12-0.31 s, k_e/G up to 36 ms, h_e ~14 ms).
_LOCAL_UNIT = np.array([50.0, 0.3, 1.0])
_EDGE_UNIT = np.array([0.05, 0.02])
_GAIN_UNIT = 10.0


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def feature_counts(features: str) -> tuple[int, int]:
    """``(local, global)`` feature counts besides the indicator; ``convex`` adds one each."""
    if features == "set":
        return SET_USER_FEATURES, SET_GLOBAL_FEATURES
    extra = int(features == "convex")
    return LOCAL_FEATURES + extra, GLOBAL_FEATURES + extra


def observation_size(max_users: int, features: str = "paper") -> int:
    local, glob = feature_counts(features)
    if features == "set":
        max_users = SET_ROWS  # the set state has a fixed number of rows, whatever the user count
    return max_users * (local + 1) + glob


@dataclass(frozen=True)
class ScopeConfig:
    """Which instances episodes are drawn from (the paper's three applicability scopes).

    ``general``: random G in ``gpus_range``, random user count in ``users_range``;
    ``gpu``: G fixed at ``gpus``, random user count; ``specific``: the one instance
    ``random_instance(users, gpus, seed=instance_seed)``. ``B_max`` is fixed, or with
    ``bmax_range`` drawn per episode (general and gpu scopes), so that one network serves
    windows of any ``B_max`` (the twin's and the service's windows have any).

    Beyond the paper (all off by default, so the paper's scopes draw what they drew before):
    ``scenario`` draws windows from a scenario (its devices, alpha, link, edge, ``G`` and ``B_max``,
    and user counts from ``users_choices``, default its ``users``); ``cached_share`` of the windows
    carry cached steps (each user a hit with a probability drawn in 0.1-0.9 per window, its depth
    uniform in ``1..N - N_hat`` or, in half of the windows, ``1..N``); ``curriculum_stages`` > 1
    makes :meth:`at` widen the user counts stage by stage across training.
    """

    scope: str = "general"
    gpus: int = 8
    users: int = 20
    users_range: tuple[int, int] = (4, 20)
    gpus_range: tuple[int, int] = (1, 16)
    B_max: int = 20
    instance_seed: int = 0
    bmax_range: tuple[int, int] | None = None
    scenario: Scenario | None = None
    users_choices: tuple[int, ...] | None = None
    cached_share: float = 0.0
    curriculum_stages: int = 1

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        lo, hi = self.users_range
        if not 1 <= lo <= hi:
            raise ValueError(f"users_range must satisfy 1 <= lo <= hi, got {self.users_range}")
        if not 1 <= self.gpus_range[0] <= self.gpus_range[1]:
            raise ValueError(f"gpus_range must satisfy 1 <= lo <= hi, got {self.gpus_range}")
        if self.gpus < 1 or self.users < 1 or self.B_max < 1:
            raise ValueError("gpus, users and B_max must be >= 1")
        if self.bmax_range is not None:
            object.__setattr__(self, "bmax_range", tuple(self.bmax_range))
            if not 1 <= self.bmax_range[0] <= self.bmax_range[1]:
                raise ValueError(f"bmax_range must satisfy 1 <= lo <= hi, got {self.bmax_range}")
        if self.scenario is not None and self.users_choices is None:
            object.__setattr__(self, "users_choices", tuple(self.scenario.users))
        if self.users_choices is not None:
            object.__setattr__(self, "users_choices", tuple(sorted(int(u) for u in self.users_choices)))
            if not self.users_choices or self.users_choices[0] < 1:
                raise ValueError(f"users_choices must be user counts >= 1, got {self.users_choices}")
        if self.scenario is not None and self.scenario.B_max < 1:
            raise ValueError("the scenario's B_max must be >= 1 to train (B_max = 0 is all-local)")
        if not 0.0 <= self.cached_share <= 1.0:
            raise ValueError(f"cached_share must be in [0, 1], got {self.cached_share}")
        if self.curriculum_stages < 1:
            raise ValueError(f"curriculum_stages must be >= 1, got {self.curriculum_stages}")

    @property
    def max_users(self) -> int:
        if self.scope == "specific":
            return self.users
        return self.users_choices[-1] if self.users_choices is not None else self.users_range[1]

    def at(self, fraction: float) -> ScopeConfig:
        """The scope of the curriculum stage reached at ``fraction`` of the training (0 to 1):
        stage ``k`` of ``S`` draws from the smallest ``k/S`` of the user counts. Itself when
        ``curriculum_stages`` is 1 or the scope is ``specific``."""
        stages = self.curriculum_stages
        if stages == 1 or self.scope == "specific":
            return self
        stage = min(stages, int(fraction * stages) + 1)
        if self.users_choices is not None:
            keep = max(1, -(-len(self.users_choices) * stage // stages))
            return replace(self, users_choices=self.users_choices[:keep], curriculum_stages=1)
        lo, hi = self.users_range
        return replace(self, users_range=(lo, lo + -(-(hi - lo) * stage // stages)), curriculum_stages=1)

    def sample(self, rng: np.random.Generator) -> Instance:
        if self.scope == "specific":
            return random_instance(self.users, self.gpus, seed=self.instance_seed, B_max=self.B_max)
        if self.scenario is not None:
            assert self.users_choices is not None  # __post_init__ takes the scenario's users
            users = int(self.users_choices[rng.integers(len(self.users_choices))])
            instance = draw_instance(self.scenario, users, rng)
        else:
            if self.users_choices is not None:
                users = int(self.users_choices[rng.integers(len(self.users_choices))])
            else:
                users = int(rng.integers(self.users_range[0], self.users_range[1] + 1))
            gpus = self.gpus if self.scope == "gpu" else int(rng.integers(self.gpus_range[0], self.gpus_range[1] + 1))
            B_max = self.B_max if self.bmax_range is None else int(rng.integers(*self.bmax_range, endpoint=True))
            instance = random_instance(users, gpus, seed=rng, B_max=B_max)
        if self.cached_share > 0 and rng.random() < self.cached_share:
            instance = with_cached_steps(instance, rng)
        return instance


def candidates(gain: np.ndarray) -> np.ndarray:
    """Users that some optimum may hold, from the ``(I, B)`` gain table: those among the best ``b``
    (ties by index, as ``exact``) with a positive gain at some batch size ``b``. A user outside this
    set is never needed: every optimum's users with a positive gain are among its batch size's best."""
    if gain.size == 0:
        return np.zeros(gain.shape[0], bool)
    order = np.argsort(-gain, axis=0, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(gain.shape[0])[:, None], axis=0)
    # NumPy's stubs type any() over an axis as a scalar or an array; over axis 1 of a 2-D array it is an array
    return ((rank < np.arange(1, gain.shape[1] + 1)[None, :]) & (gain > 0)).any(1)  # type: ignore[return-value]


def with_cached_steps(instance: Instance, rng: np.random.Generator) -> Instance:
    """``instance`` with random cached steps: each user a hit with a probability drawn in 0.1-0.9,
    its depth uniform in ``1..N - N_hat`` (the steps an edge can run) or, in half of the draws, ``1..N``."""
    hit = rng.random(instance.num_users) < rng.uniform(0.1, 0.9)
    deepest = instance.N if rng.random() < 0.5 else max(1, instance.N - instance.N_hat)
    depth = rng.integers(1, deepest, size=instance.num_users, endpoint=True)
    return replace(instance, cached_steps=np.where(hit, depth, 0).astype(np.int64))


# What changes along an episode; every other array of a slot is its instance's tables
EPISODE_STATE = ("indicator", "current", "granted", "earned", "value", "granted_gain", "grant_change")


class EpisodeBatch:
    """``size`` episodes of the MDP stepped together with NumPy; each slot resets on its own.

    Per slot it keeps the instance's tables: ``gain[i, b-1]`` (granted minus denied utility
    at batch size ``b``), ``pai_value[i, b-1] = alpha_i F(n_i(b))``, the denied utility and
    ``alpha_i F(N)``; every step is then a table lookup.
    """

    def __init__(
        self,
        size: int,
        max_users: int,
        *,
        reward_scale: float = 0.1,
        state_scaling: str = "raw",
        reward: str = "paper",
        features: str = "paper",
    ):
        _check_choice("state_scaling", state_scaling, STATE_SCALINGS)
        _check_choice("reward", reward, REWARDS)
        _check_choice("features", features, FEATURES)
        if features == "set" and reward != "marginal":
            raise ValueError("features 'set' needs reward 'marginal' (users denied without a step earn nothing)")
        self.size, self.max_users = size, max_users
        self.reward_scale = reward_scale
        self.state_scaling, self.reward, self.features = state_scaling, reward, features
        E, M = size, max_users
        self.static = np.zeros((E, M, LOCAL_FEATURES))
        self.edge = np.zeros((E, 2))  # k_e / G, h_e
        self.num_users = np.ones(E, np.int64)
        self.B_max = np.ones(E, np.int64)  # capped at the user count (the same constraint)
        self.gain = np.zeros((E, M, M))
        self.pai_value = np.zeros((E, M, M))
        self.denied_value = np.zeros((E, M))
        self.denied_pai = np.zeros((E, M))
        self.split = np.zeros((E, M, M), np.int64)
        self.indicator = np.full((E, M), DENIED, np.int64)
        self.current = np.zeros(E, np.int64)
        self.granted = np.zeros(E, np.int64)
        self.earned = np.zeros(E)  # unscaled rewards of the episode so far
        self.value = np.zeros(E)  # sum of the granted users' gains at the current batch size
        self.granted_gain = np.zeros((E, M))  # the same sum at every batch size b (column b - 1)
        self.grant_change = np.zeros(E)  # value change if the current user were granted now
        self.cached = np.zeros((E, M))  # d_i / N
        # features="set": deny users whose gain at the next batch size is not positive without a
        # step (only where gains provably fall with the batch size)
        self.skip_hopeless = features == "set"
        self.can_skip = np.zeros(E, bool)
        self.candidate = np.ones((E, M), bool)  # users some optimum may hold (features="set")
        self.candidates_from = np.zeros((E, M + 1), np.int64)  # candidates at positions >= i

    def reset_slot(self, slot: int, instance: Instance) -> None:
        users, M = instance.num_users, self.max_users
        if users > M:
            raise ValueError(f"instance has {users} users; this environment handles at most {M}")
        if instance.max_granted < 1:
            raise ValueError("B_max must be >= 1 for an episode (B_max = 0 is all-local)")
        split, gain = gain_table(instance)
        B = split.shape[1]
        self.static[slot] = 0.0
        self.static[slot, :users] = np.stack([instance.alpha, instance.local_step_latency, instance.request_time], 1)
        self.edge[slot] = instance.edge_k / instance.G, instance.edge_h
        self.num_users[slot], self.B_max[slot] = users, instance.max_granted
        self.gain[slot], self.pai_value[slot], self.split[slot] = 0.0, 0.0, instance.N
        self.gain[slot, :users, :B] = gain
        self.split[slot, :users, :B] = split
        self.pai_value[slot, :users, :B] = instance.alpha[:, None] * instance.pai(split)
        self.denied_value[slot] = 0.0
        self.denied_value[slot, :users] = denied_utility(instance)
        self.denied_pai[slot] = 0.0
        self.denied_pai[slot, :users] = instance.alpha * instance.pai(instance.N)
        self.indicator[slot] = DENIED
        self.indicator[slot, :users] = PENDING
        self.indicator[slot, 0] = CURRENT
        self.current[slot] = self.granted[slot] = 0
        self.earned[slot] = self.value[slot] = 0.0
        self.granted_gain[slot] = 0.0
        self.cached[slot] = 0.0
        self.cached[slot, :users] = instance.cached_steps / instance.N
        self.can_skip[slot] = self.skip_hopeless and gains_fall_with_batch_size(instance)
        self.candidate[slot] = True
        if self.can_skip[slot]:
            self.candidate[slot, :users] = candidates(gain)
        self.candidate[slot, users:] = False
        self.candidates_from[slot] = np.concatenate([np.cumsum(self.candidate[slot][::-1])[::-1], [0]])
        if self.can_skip[slot]:
            self._skip(np.array([slot]))
        self.grant_change[slot] = self._grant_change(np.array([slot]))[0]

    def _skip(self, slots: np.ndarray) -> None:
        """Deny, without a step, the users from the current one on whose gain at the next batch
        size is not positive, and make the next other user current (``num_users`` if none is left)."""
        slots = slots[self.can_skip[slots]]
        if not slots.size:
            return
        M = self.max_users
        column = np.minimum(self.granted[slots], M - 1)
        position = np.arange(M)[None, :]
        current, n = self.current[slots, None], self.num_users[slots, None]
        worth = (position >= current) & (position < n) & (self.gain[slots, :, column] > 0) & self.candidate[slots]
        following = np.where(worth.any(1), worth.argmax(1), n[:, 0])
        hopeless = (position >= current) & (position < following[:, None])
        indicator = self.indicator[slots]
        indicator[hopeless] = DENIED
        self.indicator[slots] = indicator
        self.current[slots] = following

    def copy_slots(self, source: EpisodeBatch, from_slots, to_slots, *, state_only: bool = False) -> None:
        """Put ``to_slots`` where ``source``'s ``from_slots`` are (the same instance, the same
        point of its episode) without rebuilding tables; ``state_only`` copies only what
        changes along an episode (the slots already hold the same instance)."""
        names = EPISODE_STATE if state_only else [k for k, v in vars(self).items() if isinstance(v, np.ndarray)]
        for name in names:
            getattr(self, name)[to_slots] = getattr(source, name)[from_slots]

    def observe(self, slots=None) -> np.ndarray:
        """Observations (float32, ``(len(slots), observation_size)``), current user first."""
        slots = np.arange(self.size) if slots is None else np.asarray(slots)
        if self.features == "set":
            return self._observe_set(slots)
        M, (nl, ng) = self.max_users, feature_counts(self.features)
        n = self.num_users[slots, None]
        position = np.arange(M)[None, :]
        users = np.where(position < n, (self.current[slots, None] + position) % n, position)
        rows = slots[:, None]
        unit = self.state_scaling == "unit"
        count_unit = float(M) if unit else 1.0
        handled = np.minimum(self.current[slots], n[:, 0])
        granted = self.granted[slots]

        obs = np.empty((len(slots), M * (nl + 1) + ng), np.float32)
        local = obs[:, : M * (nl + 1)].reshape(len(slots), M, nl + 1)
        local[..., :LOCAL_FEATURES] = self.static[rows, users] / _LOCAL_UNIT if unit else self.static[rows, users]
        local[..., nl] = self.indicator[rows, users]
        glob = obs[:, M * (nl + 1) :]
        glob[:, 0] = self.B_max[slots] / count_unit
        glob[:, 1:3] = self.edge[slots] / _EDGE_UNIT if unit else self.edge[slots]
        glob[:, 3] = (n[:, 0] - handled) / count_unit
        glob[:, 4] = granted / count_unit
        glob[:, 5] = (handled - granted) / count_unit
        if self.features == "convex":
            # What the convex inner problem knows: each user's gain if granted into a batch
            # one larger than now, and how much granting the current user changes the value.
            gain_unit = _GAIN_UNIT if unit else 1.0
            local[..., LOCAL_FEATURES] = self.gain[rows, users, np.minimum(granted, M - 1)[:, None]] / gain_unit
            glob[:, 6] = self.grant_change[slots] / gain_unit
        return obs

    def finished(self, slots=None) -> np.ndarray:
        """Whether each slot's episode has no decision left (with ``features="set"`` a window can
        have none from its start: every user's gain is not positive)."""
        slots = np.arange(self.size) if slots is None else np.asarray(slots)
        return (self.current[slots] >= self.num_users[slots]) | (self.granted[slots] >= self.B_max[slots])

    def _observe_set(self, slots: np.ndarray) -> np.ndarray:
        """The ``set`` state: a row for the current user, then rows for the pending users of
        largest gain at the next batch size (``SET_ROWS - 1`` at most, best first; padding rows of
        zeros), and size-free globals (module docstring)."""
        M, F, R = self.max_users, SET_USER_FEATURES, SET_ROWS
        n = self.num_users[slots, None]
        position = np.arange(M)[None, :]
        rows = slots[:, None]
        granted = self.granted[slots]
        column = np.minimum(granted, M - 1)
        current = np.minimum(self.current[slots], M - 1)
        gain_all = self.gain[slots, :, column]  # (slots, M): every user's gain at the next batch size
        gain_current = gain_all[np.arange(len(slots)), current]
        pending = (position > self.current[slots, None]) & (position < n) & self.candidate[slots]
        ranked = np.where(pending, gain_all, -np.inf)
        order = np.argsort(-ranked, axis=1, kind="stable")[:, : R - 1]
        users = np.concatenate([current[:, None], order], 1)
        valid = np.concatenate([np.ones((len(slots), 1), bool), np.take_along_axis(pending, order, 1)], 1)
        gain = np.take_along_axis(gain_all, users, 1) / _GAIN_UNIT
        obs = np.zeros((len(slots), R * (F + 1) + SET_GLOBAL_FEATURES), np.float32)
        local = obs[:, : R * (F + 1)].reshape(len(slots), R, F + 1)
        local[:, : users.shape[1], :LOCAL_FEATURES] = self.static[rows, users] / _LOCAL_UNIT
        local[:, : users.shape[1], 3] = self.cached[rows, users]
        local[:, : users.shape[1], 4] = gain
        local[:, : users.shape[1], 5] = gain - gain[:, :1]
        local[:, : users.shape[1], SET_VALID] = valid
        local[:, 0, F] = 1.0  # the current user (the others are pending)
        local[:, : users.shape[1]][~valid] = 0.0
        waiting = self.candidates_from[slots, np.minimum(self.current[slots], M)]  # the current one included
        left = np.maximum(self.B_max[slots] - granted, 0)
        glob = obs[:, R * (F + 1) :]
        glob[:, 0] = np.log1p(left) / 4.0
        glob[:, 1] = np.log1p(waiting) / 4.0
        glob[:, 2] = np.log1p(granted) / 4.0
        glob[:, 3] = np.minimum(left / np.maximum(waiting, 1), 1.0)
        glob[:, 4:6] = self.edge[slots] / _EDGE_UNIT
        glob[:, 6] = self.grant_change[slots] / _GAIN_UNIT
        glob[:, 7] = (self.granted_gain[slots, column] - self.value[slots]) / _GAIN_UNIT
        glob[:, 8] = np.log1p((ranked > gain_current[:, None]).sum(1)) / 4.0
        glob[:, 9] = np.log1p((ranked > 0).sum(1)) / 4.0
        return obs

    def _grant_change(self, slots) -> np.ndarray:
        """Change of the value if the current user of each slot were granted now (kept in
        ``grant_change``, refreshed whenever a slot moves to its next user)."""
        b = self.granted[slots]
        joining = np.minimum(b, self.max_users - 1)
        user = self.current[slots] % self.num_users[slots]
        after = self.granted_gain[slots, joining] + self.gain[slots, user, joining]
        return np.where(b < self.B_max[slots], after - self.value[slots], 0.0)

    def step(self, actions, slots=None) -> tuple[np.ndarray, np.ndarray]:
        """Apply one action to each of ``slots`` (default all); returns ``(rewards, done)``.

        A slot that is done must be reset before it is stepped again.
        """
        slots = np.arange(self.size) if slots is None else np.asarray(slots)
        grant = np.asarray(actions).astype(bool)
        change = np.where(grant, self.grant_change[slots], 0.0)
        user = self.current[slots]
        self.indicator[slots, user] = np.where(grant, GRANTED, DENIED)
        self.granted[slots] += grant
        self.value[slots] += change
        self.granted_gain[slots[grant]] += self.gain[slots[grant], user[grant]]
        batch = np.maximum(self.granted[slots], 1)
        step_reward = np.where(grant, self.pai_value[slots, user, batch - 1], self.denied_pai[slots, user])
        self.current[slots] += 1
        if self.skip_hopeless:
            self._skip(slots[self.granted[slots] < self.B_max[slots]])
        done = (self.current[slots] >= self.num_users[slots]) | (self.granted[slots] >= self.B_max[slots])

        if self.reward == "marginal":
            reward = change  # sums to the objective minus the all-local objective
        else:
            reward = step_reward.copy()  # eq. (21)
            if done.any():
                reward[done] = self.objective(slots[done]) - self.earned[slots[done]]
        final, running = slots[done], slots[~done]
        if final.size:
            self.indicator[final] = np.where(self.indicator[final] == GRANTED, GRANTED, DENIED)
        self.earned[running] += step_reward[~done]
        self.indicator[running, self.current[running]] = CURRENT
        self.grant_change[running] = self._grant_change(running)
        return reward * self.reward_scale, done

    def objective(self, slots) -> np.ndarray:
        """Objective of the decision in each slot: every user not granted counts as denied."""
        slots = np.asarray(slots)
        granted = self.indicator[slots] == GRANTED
        batch = np.maximum(self.granted[slots], 1)
        gain = self.gain[slots[:, None], np.arange(self.max_users)[None, :], (batch - 1)[:, None]]
        return self.denied_value[slots].sum(1) + np.where(granted, gain, 0.0).sum(1)

    def all_local_objective(self, slots) -> np.ndarray:
        return self.denied_value[np.asarray(slots)].sum(1)

    def granted_users(self, slot: int) -> np.ndarray:
        return self.indicator[slot, : self.num_users[slot]] == GRANTED


class OffloadEnv(gym.Env):
    """One window per episode (registered as ``edgediff/Offload-v0``).

    ``reset(seed=..., options={"instance": inst})`` runs a given instance; otherwise the
    instance is drawn from the scope with the environment's ``np_random``. At the end of an
    episode ``info`` holds ``objective`` (unscaled) and ``granted`` (bool per user).
    """

    metadata = {"render_modes": []}

    def __init__(self, scope: ScopeConfig | None = None, **mdp_options):
        """``mdp_options``: ``reward_scale``, ``state_scaling``, ``reward``, ``features`` of
        :class:`EpisodeBatch` (defaults: the paper's)."""
        self.scope = scope or ScopeConfig()
        self.batch = EpisodeBatch(1, self.scope.max_users, **mdp_options)
        size = observation_size(self.scope.max_users, self.batch.features)
        big = np.finfo(np.float32).max
        self.observation_space = gym.spaces.Box(-big, big, (size,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        instance = (options or {}).get("instance")
        if instance is None:  # with features="set" a drawn window may have no decision to make: draw again
            instance = self.scope.sample(self.np_random)
            self.batch.reset_slot(0, instance)
            while self.batch.finished([0])[0]:
                instance = self.scope.sample(self.np_random)
                self.batch.reset_slot(0, instance)
        self.batch.reset_slot(0, instance)
        return self.batch.observe()[0], {"num_users": instance.num_users, "gpus": instance.G}

    def step(self, action):
        reward, done = self.batch.step(np.array([int(action)]))
        info = {}
        if done[0]:
            info = {"objective": float(self.batch.objective([0])[0]), "granted": self.batch.granted_users(0)}
        return self.batch.observe()[0], float(reward[0]), bool(done[0]), False, info
