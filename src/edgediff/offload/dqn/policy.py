"""The ``dqn`` policy: a trained Q-network handles the users one by one, greedily.

A decision is one forward pass per user with batch size 1, where torch's per-call overhead
(~15 us per module) outweighs the arithmetic; so the policy evaluates the trained weights
with NumPy (:class:`NumpyQ`, checked against the torch network in the tests).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edgediff.core.instance import Instance
from edgediff.core.model import Decision
from edgediff.offload.dqn.checkpoint import load_checkpoint
from edgediff.offload.dqn.env import EpisodeBatch
from edgediff.offload.dqn.network import QNetwork
from edgediff.offload.dqn.train import DqnConfig, greedy_rollout
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


@lru_cache(maxsize=4)
def _load(checkpoint: str | None) -> tuple[NumpyQ, DqnConfig]:
    network, config, _ = load_checkpoint(checkpoint)
    return NumpyQ(network), config


def prepare(checkpoint: str | None = None) -> None:
    """Load (and cache) the checkpoint, so that a bad one fails before any decision."""
    _load(None if checkpoint is None else str(checkpoint))


def max_users(checkpoint: str | None = None) -> int:
    """The largest user count the checkpoint's network takes (its input is padded to it)."""
    return _load(None if checkpoint is None else str(checkpoint))[0].max_users


def solve_dqn(instance: Instance, checkpoint: str | None = None) -> Decision:
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
    batch = EpisodeBatch(1, q_function.max_users, **config.mdp_options)
    batch.reset_slot(0, instance)
    greedy_rollout(q_function, batch)
    return decision_from_table(instance, batch.granted_users(0), batch.split[0, : instance.num_users])
