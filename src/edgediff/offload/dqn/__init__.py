"""``dqn``: the paper's DRL-convex hybrid (Sec. V-C) — the MDP as a Gymnasium environment,
a PER-DQN agent in PyTorch, its training loop and the ``dqn`` policy.

Importing this package registers the environment as ``edgediff/Offload-v0``; torch is only
imported by the agent modules (``network``, ``train``, ``policy``).
"""

import gymnasium as gym

ENV_ID = "edgediff/Offload-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="edgediff.offload.dqn.env:OffloadEnv")
