"""The ``dqn`` policy: a trained Q-network handles the users one by one.

``beam_width = 1`` is the paper's agent: one episode, ``argmax Q`` at every step. A wider
beam (beyond the paper; the default) keeps the ``beam_width`` best partial episodes, ranked
by the reward collected so far plus ``Q`` of the next action (the network's estimate of the
whole episode's return), and decides by the finished episode with the best objective, which
the environment computes exactly (the system model as critic, as DROO and DRC use theirs).

A decision is a few forward passes per user with small batches, where torch's per-call
overhead (~15 us per module) outweighs the arithmetic; so the policy evaluates the trained
weights with NumPy (:class:`NumpyQ`, checked against the torch network in the tests).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edgediff.core.instance import Instance
from edgediff.core.model import Decision
from edgediff.errors import InputError
from edgediff.offload.dqn.checkpoint import load_checkpoint
from edgediff.offload.dqn.env import SET_GLOBAL_FEATURES, SET_ROWS, SET_USER_FEATURES, SET_VALID, EpisodeBatch
from edgediff.offload.dqn.network import QNetwork, SetQNetwork
from edgediff.offload.dqn.train import DqnConfig
from edgediff.offload.exact import decision_from_table
from edgediff.offload.policies import CheckpointError


class NumpyQ:
    """Forward pass of a :class:`QNetwork` in NumPy (float32), for fast single decisions."""

    def __init__(self, network: QNetwork):
        weights = {k: v.detach().numpy() for k, v in network.state_dict().items()}
        self.max_users = network.max_users
        self.local_features, self.global_features = network.local_features, network.global_features
        self.embedding = weights["embedding.weight"]
        linear = sorted({k.rsplit(".", 1)[0] for k in weights if k.startswith("body.")})
        self.body = [(weights[f"{name}.weight"].T.copy(), weights[f"{name}.bias"]) for name in linear]
        self.head = (weights["head.weight"].T.copy(), weights["head.bias"])
        self.value = (weights["value.weight"].T.copy(), weights["value.bias"]) if network.dueling else None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        nl, ng = self.local_features, self.global_features
        local = obs[:, :-ng].reshape(len(obs), self.max_users, nl + 1)
        indicator = self.embedding[local[..., nl].astype(np.int64)]
        hidden = np.concatenate(
            [np.concatenate([local[..., :nl], indicator], 2).reshape(len(obs), -1), obs[:, -ng:]], 1
        )
        for weight, bias in self.body:
            hidden = np.maximum(hidden @ weight + bias, 0.0)
        q = hidden @ self.head[0] + self.head[1]
        if self.value is not None:
            q = hidden @ self.value[0] + self.value[1] + q - 0.5 * (q[:, :1] + q[:, 1:])  # two actions
        return q


class SetNumpyQ:
    """Forward pass of a :class:`SetQNetwork` in NumPy (float32): the ``set`` state of any number of users."""

    def __init__(self, network: SetQNetwork):
        weights = {k: v.detach().numpy() for k, v in network.state_dict().items()}
        self.max_users = None  # any
        self.encoder = (weights["encoder.weight"].T.copy(), weights["encoder.bias"])
        linear = sorted({k.rsplit(".", 1)[0] for k in weights if k.startswith("body.")})
        self.body = [(weights[f"{name}.weight"].T.copy(), weights[f"{name}.bias"]) for name in linear]
        self.dueling = network.dueling
        heads = ["head", "value"] if network.dueling else ["head"]  # one product for both heads
        self.out = (
            np.concatenate([weights[f"{h}.weight"] for h in heads]).T.copy(),
            np.concatenate([weights[f"{h}.bias"] for h in heads]),
        )

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        F, ng = SET_USER_FEATURES, SET_GLOBAL_FEATURES
        local = obs[:, :-ng].reshape(len(obs), -1, F + 1)
        valid = local[..., SET_VALID]
        users = max(1, int(valid.sum(1).max()))
        local, valid = local[:, :users], valid[:, :users, None]
        encoded = np.maximum(local @ self.encoder[0] + self.encoder[1], 0.0) * valid
        mean = encoded.sum(1) / np.maximum(valid.sum(1), 1.0)
        return self.head_q(np.concatenate([encoded[:, 0], mean, encoded.max(1), obs[:, -ng:]], 1))

    def head_q(self, hidden: np.ndarray) -> np.ndarray:
        for weight, bias in self.body:
            hidden = np.maximum(hidden @ weight + bias, 0.0)
        out = hidden @ self.out[0] + self.out[1]
        if not self.dueling:
            return out
        return out[:, 2:] + out[:, :2] - 0.5 * (out[:, :1] + out[:, 1:2])


# Over B_max 1-20 (bench_dqn.py --bmax-sweep) the worst instance goes from 0.85-0.90 of the
# optimum with the greedy agent to 0.985-0.993 with 8, for ~1 ms more (docs/offloading-model.md)
DEFAULT_BEAM_WIDTH = 8


@lru_cache(maxsize=4)
def _load(checkpoint: str | None) -> tuple[NumpyQ | SetNumpyQ, DqnConfig]:
    network, config, _ = load_checkpoint(checkpoint)
    return (SetNumpyQ(network) if isinstance(network, SetQNetwork) else NumpyQ(network)), config


def prepare(checkpoint: str | None = None, beam_width: int = DEFAULT_BEAM_WIDTH) -> None:
    """Load (and cache) the checkpoint and check the options, so that bad ones fail before any
    decision."""
    _check_beam_width(beam_width)
    _load(None if checkpoint is None else str(checkpoint))


def _check_beam_width(beam_width) -> None:
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
        raise InputError(f"dqn option beam_width must be an integer >= 1, got {beam_width!r}")


def max_users(checkpoint: str | None = None) -> int | None:
    """The largest user count the checkpoint's network takes (its input is padded to it); ``None``:
    any (a ``set`` network)."""
    return _load(None if checkpoint is None else str(checkpoint))[0].max_users


def solve_dqn(instance: Instance, checkpoint: str | None = None, beam_width: int = DEFAULT_BEAM_WIDTH) -> Decision:
    _check_beam_width(beam_width)
    q_function, config = _load(None if checkpoint is None else str(checkpoint))
    if instance.max_granted == 0:
        return Decision.all_local(instance)
    if q_function.max_users is not None and instance.num_users > q_function.max_users:
        raise CheckpointError(
            f"the dqn checkpoint handles at most {q_function.max_users} users; the instance has {instance.num_users}"
        )
    if instance.has_cached_steps and config.mdp_options.get("features") not in ("convex", "set"):
        # the paper's state has no cached steps: its grants would ignore them (the convex
        # features carry each user's gain, which counts them)
        raise CheckpointError(
            "the dqn checkpoint's state (features 'paper') does not see users' cached_steps; "
            "use a checkpoint trained with features 'convex' or 'set', or exact, timeline or ga"
        )
    if isinstance(q_function, SetNumpyQ):
        granted, split = set_beam_search(q_function, config, instance, beam_width)
    else:
        granted, split = beam_search(q_function, config, instance, beam_width)
    return decision_from_table(instance, granted, split[: instance.num_users])


def beam_search(q_function: NumpyQ, config: DqnConfig, instance: Instance, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The granted users and split table of the best finished episode of a beam search."""
    users = q_function.max_users or instance.num_users  # a set network: no padding
    batches = [EpisodeBatch(width, users, **config.mdp_options) for _ in range(2)]
    batches[0].reset_slot(0, instance)
    if batches[0].finished([0])[0]:  # no user worth a decision: all local
        return np.zeros(instance.num_users, bool), batches[0].split[0]
    for batch in batches:  # the instance's tables in every slot, once
        batch.copy_slots(batches[0], np.zeros(width, np.int64), np.arange(width))
    beam, children = batches
    collected = np.zeros(width)  # the scaled reward each beam episode has collected so far
    active = np.array([0])
    best, best_objective = None, -np.inf
    while active.size:
        score = collected[active, None] + q_function(beam.observe(active))
        ranked = np.argsort(-score, axis=None, kind="stable")[:width]
        parent, action = np.divmod(ranked, 2)
        slots = np.arange(ranked.size)
        children.copy_slots(beam, active[parent], slots, state_only=True)
        reward, done = children.step(action, slots)
        collected[slots] = collected[active[parent]] + reward
        for slot in slots[done]:
            objective = children.objective([slot])[0]
            if objective > best_objective:
                best_objective, best = objective, (children.granted_users(slot), children.split[slot].copy())
        beam, children = children, beam
        active = slots[~done]
    assert best is not None  # every beam episode ends, and the first one to end is taken
    return best


def set_beam_search(q_function: SetNumpyQ, config: DqnConfig, instance: Instance, width: int):
    """:func:`beam_search` for a ``set`` network: the same episodes and the same states as
    :class:`EpisodeBatch` builds, without its per-slot tables (a test checks both agree)."""
    from edgediff.offload.dqn.env import _EDGE_UNIT, _GAIN_UNIT, _LOCAL_UNIT, candidates
    from edgediff.offload.exact import denied_utility, gain_table, gains_fall_with_batch_size

    R, F = SET_ROWS, SET_USER_FEATURES
    split, full_gain = gain_table(instance)
    limit = full_gain.shape[1]  # min(B_max, I)
    can_skip = gains_fall_with_batch_size(instance)
    # only the candidates ever get a step, count as pending or get a row: the episode runs on them alone
    kept = np.flatnonzero(candidates(full_gain)) if can_skip else np.arange(instance.num_users)
    n, gain = len(kept), full_gain[kept]
    by_batch = np.ascontiguousarray(gain.T)  # row b: every candidate's gain at batch size b + 1
    positive = by_batch > 0
    static = np.zeros((n, F + 1), np.float32)  # a user's row without its gains; the valid flag set
    static[:, :3] = (
        np.stack([instance.alpha, instance.local_step_latency, instance.request_time], 1)[kept] / _LOCAL_UNIT
    )
    static[:, 3] = instance.cached_steps[kept] / instance.N
    static[:, SET_VALID] = 1.0
    edge = np.array([instance.edge_k / instance.G, instance.edge_h]) / _EDGE_UNIT
    denied_total = float(denied_utility(instance).sum())
    scale = config.reward_scale
    users = np.arange(n)
    rows_taken = min(R - 1, n)

    # following[b, i]: the first candidate from position i on whose gain at batch size b + 1 is positive (n: none)
    following = np.full((limit, n + 1), n, np.int64)
    if can_skip:
        for i in range(n - 1, -1, -1):
            following[:, i] = np.where(positive[:, i], i, following[:, i + 1])
    else:
        following[:, :n] = np.arange(n)

    def skip(current, b):
        """The next user from ``current`` on whose gain at batch size ``b + 1`` is positive."""
        return following[np.minimum(b, limit - 1), current]

    # the beam: one row per partial episode
    current = skip(np.zeros(1, np.int64), np.zeros(1, np.int64))
    b = np.zeros(1, np.int64)
    value = np.zeros(1)  # the granted users' gain sum at batch size b
    totals = np.zeros((1, limit))  # the same sum at every batch size (column b - 1)
    collected = np.zeros(1)
    granted = np.zeros((1, n), bool)
    best, best_objective = np.zeros(n, bool), -np.inf  # a window with no decision to make: all local
    active = (current < n) & (b < limit)
    while active.any():
        if not active.all():
            keep = np.flatnonzero(active)
            current, b, value, totals, collected, granted = (
                current[keep], b[keep], value[keep], totals[keep], collected[keep], granted[keep],
            )  # fmt: skip
        k = len(current)
        beam = np.arange(k)
        row = np.minimum(b, limit - 1)
        gain_all = by_batch[row]  # (k, n)
        gain_current = gain_all[beam, current]
        pending = users[None, :] > current[:, None]
        ranked = np.where(pending, gain_all, -np.inf)
        order = np.argsort(-ranked, axis=1, kind="stable")[:, :rows_taken]
        chosen = np.concatenate([current[:, None], order], 1)
        across = beam[:, None]
        valid = np.concatenate([np.ones((k, 1), bool), pending[across, order]], 1)
        local = static[chosen]  # (k, rows, F + 1)
        g = gain_all[across, chosen] / _GAIN_UNIT
        local[..., 4] = g
        local[..., 5] = g - g[:, :1]
        local[:, 0, F] = 1.0  # (rows past the valid ones are masked after the encoder)
        encoded = np.maximum(local @ q_function.encoder[0] + q_function.encoder[1], 0.0) * valid[..., None]
        waiting = n - current
        left = limit - b
        change = totals[beam, row] + gain[current, row] - value
        glob = np.empty((k, SET_GLOBAL_FEATURES), np.float32)
        counts = np.stack([left, waiting, b, (ranked > gain_current[:, None]).sum(1), (ranked > 0).sum(1)], 1)
        logs = np.log1p(counts) / 4.0
        glob[:, :3] = logs[:, :3]
        glob[:, 3] = np.minimum(left / waiting, 1.0)
        glob[:, 4:6] = edge
        glob[:, 6] = change / _GAIN_UNIT
        glob[:, 7] = (totals[beam, row] - value) / _GAIN_UNIT
        glob[:, 8:] = logs[:, 3:]
        mean = encoded.sum(1) / valid.sum(1, keepdims=True)
        hidden = np.concatenate([encoded[:, 0], mean, encoded.max(1), glob], 1)
        score = collected[:, None] + q_function.head_q(hidden)
        ranked_children = np.argsort(-score, axis=None, kind="stable")[:width]
        parent, action = np.divmod(ranked_children, 2)
        grant = action.astype(bool)
        current, b, value, totals, collected, granted, change = (
            current[parent], b[parent], value[parent], totals[parent], collected[parent], granted[parent],
            change[parent],
        )  # fmt: skip
        who = np.flatnonzero(grant)
        granted[who, current[who]] = True
        totals[who] += gain[current[who]]
        value[who] += change[who]
        collected[who] += change[who] * scale
        b[who] += 1
        current = current + 1
        running = b < limit
        current[running] = skip(current[running], b[running])
        active = (current < n) & running
        for r in np.flatnonzero(~active):
            objective = denied_total + (totals[r, b[r] - 1] if b[r] else 0.0)
            if objective > best_objective:
                best_objective, best = objective, granted[r].copy()
    chosen_users = np.zeros(instance.num_users, bool)
    chosen_users[kept[best]] = True
    return chosen_users, split
