"""The paper's Q-network (Sec. VI-B-2): indicator embedding 4 -> 3, three hidden layers of
256, two outputs (deny, grant). ``dueling=True`` adds separate value/advantage heads."""

from __future__ import annotations

import torch
from torch import nn

from edgediff.offload.dqn.env import NUM_INDICATORS, feature_counts


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
        self.value = nn.Linear(hidden, 1) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        nl, ng = self.local_features, self.global_features
        local = obs[:, :-ng].reshape(obs.shape[0], self.max_users, nl + 1)  # indicator last
        indicator = self.embedding(local[..., nl].long())
        encoded = torch.cat([local[..., :nl], indicator], dim=2).flatten(1)
        hidden = self.body(torch.cat([encoded, obs[:, -ng:]], dim=1))
        q = self.head(hidden)
        if self.dueling:
            q = self.value(hidden) + q - q.mean(dim=1, keepdim=True)
        return q
