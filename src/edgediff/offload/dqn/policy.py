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
from edgediff.offload.dqn.env import EpisodeBatch
from edgediff.offload.dqn.network import QNetwork
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


# Over B_max 1-20 (bench_dqn.py --bmax-sweep) the worst instance goes from 0.85-0.90 of the
# optimum with the greedy agent to 0.985-0.993 with 8, for ~1 ms more (docs/offloading-model.md)
DEFAULT_BEAM_WIDTH = 8


@lru_cache(maxsize=4)
def _load(checkpoint: str | None) -> tuple[NumpyQ, DqnConfig]:
    network, config, _ = load_checkpoint(checkpoint)
    return NumpyQ(network), config


def prepare(checkpoint: str | None = None, beam_width: int = DEFAULT_BEAM_WIDTH) -> None:
    """Load (and cache) the checkpoint and check the options, so that bad ones fail before any
    decision."""
    _check_beam_width(beam_width)
    _load(None if checkpoint is None else str(checkpoint))


def _check_beam_width(beam_width) -> None:
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
        raise InputError(f"dqn option beam_width must be an integer >= 1, got {beam_width!r}")


def max_users(checkpoint: str | None = None) -> int:
    """The largest user count the checkpoint's network takes (its input is padded to it)."""
    return _load(None if checkpoint is None else str(checkpoint))[0].max_users


def solve_dqn(instance: Instance, checkpoint: str | None = None, beam_width: int = DEFAULT_BEAM_WIDTH) -> Decision:
    _check_beam_width(beam_width)
    q_function, config = _load(None if checkpoint is None else str(checkpoint))
    if instance.max_granted == 0:
        return Decision.all_local(instance)
    if instance.num_users > q_function.max_users:
        raise CheckpointError(
            f"the dqn checkpoint handles at most {q_function.max_users} users; the instance has {instance.num_users}"
        )
    if instance.has_cached_steps and config.mdp_options.get("features") != "convex":
        # the paper's state has no cached steps: its grants would ignore them (the convex
        # features carry each user's gain, which counts them)
        raise CheckpointError(
            "the dqn checkpoint's state (features 'paper') does not see users' cached_steps; "
            "use a checkpoint trained with features 'convex', or exact, timeline or ga"
        )
    granted, split = beam_search(q_function, config, instance, beam_width)
    return decision_from_table(instance, granted, split[: instance.num_users])


def beam_search(q_function: NumpyQ, config: DqnConfig, instance: Instance, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The granted users and split table of the best finished episode of a beam search."""
    batches = [EpisodeBatch(width, q_function.max_users, **config.mdp_options) for _ in range(2)]
    batches[0].reset_slot(0, instance)
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
    return best
