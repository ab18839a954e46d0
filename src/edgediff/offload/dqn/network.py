"""The paper's Q-network (Sec. VI-B-2): indicator embedding 4 -> 3, three hidden layers of
256, two outputs (deny, grant). ``dueling=True`` adds separate value/advantage heads.

:class:`SetQNetwork` (beyond the paper) takes the ``set`` state of any number of users: one
encoder layer applied to every user alike, mean and max pooling over the window's users, and a
head on the current user's encoding, the pooled encodings and the global features. Its input
does not fix the user count: padding rows (valid flag 0) are masked out of the pooling and cut
off before the encoder."""

from __future__ import annotations

import torch
from torch import nn

from edgediff.offload.dqn.env import NUM_INDICATORS, SET_GLOBAL_FEATURES, SET_USER_FEATURES, SET_VALID, feature_counts


def q_values(head: nn.Linear, value: nn.Linear | None, hidden: torch.Tensor) -> torch.Tensor:
    """The two actions' Q-values from the body's output: the head's, or with a dueling
    ``value`` head the state value plus the centred advantages."""
    q = head(hidden)
    if value is not None:
        q = value(hidden) + q - q.mean(dim=1, keepdim=True)
    return q


class QNetwork(nn.Module):
    def __init__(
        self,
        max_users: int,
        *,
        features: str = "paper",
        hidden: int = 256,
        embedding_dim: int = 3,
        dueling: bool = False,
    ):
        super().__init__()
        self.max_users = max_users
        self.local_features, self.global_features = feature_counts(features)
        self.embedding = nn.Embedding(NUM_INDICATORS, embedding_dim)
        width = max_users * (self.local_features + embedding_dim) + self.global_features
        self.body = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
        )  # fmt: skip
        self.dueling = dueling
        self.head = nn.Linear(hidden, 2)
        self.value: nn.Linear | None = nn.Linear(hidden, 1) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        nl, ng = self.local_features, self.global_features
        local = obs[:, :-ng].reshape(obs.shape[0], self.max_users, nl + 1)  # indicator last
        indicator = self.embedding(local[..., nl].long())
        encoded = torch.cat([local[..., :nl], indicator], dim=2).flatten(1)
        hidden = self.body(torch.cat([encoded, obs[:, -ng:]], dim=1))
        return q_values(self.head, self.value, hidden)


class SetQNetwork(nn.Module):
    """Q-values of the ``set`` state (any user count): ``encoder`` is one layer applied to each
    user's row alike; the head sees ``[current user's encoding, mean over users, max over users,
    globals]``."""

    def __init__(self, *, encoder: int = 32, hidden: int = 128, dueling: bool = True):
        super().__init__()
        self.max_users: int | None = None  # any
        self.local_features, self.global_features = SET_USER_FEATURES, SET_GLOBAL_FEATURES
        self.encoder = nn.Linear(SET_USER_FEATURES + 1, encoder)  # the row and its current flag
        self.body = nn.Sequential(
            nn.Linear(3 * encoder + SET_GLOBAL_FEATURES, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
        )  # fmt: skip
        self.dueling = dueling
        self.head = nn.Linear(hidden, 2)
        self.value: nn.Linear | None = nn.Linear(hidden, 1) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        F, ng = SET_USER_FEATURES, SET_GLOBAL_FEATURES
        local = obs[:, :-ng].reshape(obs.shape[0], -1, F + 1)
        valid = local[..., SET_VALID]
        users = max(1, int(valid.sum(1).max()))  # valid rows come first: cut the padding
        local, valid = local[:, :users], valid[:, :users, None]
        encoded = torch.relu(self.encoder(local)) * valid
        mean = encoded.sum(1) / valid.sum(1).clamp(min=1.0)
        hidden = self.body(torch.cat([encoded[:, 0], mean, encoded.max(1).values, obs[:, -ng:]], dim=1))
        return q_values(self.head, self.value, hidden)
