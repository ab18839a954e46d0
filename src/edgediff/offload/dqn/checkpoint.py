"""Checkpoints: the Q-network's weights in safetensors beside its configuration as JSON.

A checkpoint is a directory holding ``model.safetensors`` and ``config.json``
(``{"dqn": DqnConfig fields, "scope": ScopeConfig fields, "max_users": M, "training": {...}}``).
The package ships two: ``SHIPPED`` (``any-size``, the ``set`` network: windows of any user count,
``B_max`` and cached steps; the ``dqn`` policy's default) and ``PAPER`` (``general``, the paper's
network with 20 user slots, trained on the paper's general scope; the paper's figures use it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

from safetensors.torch import load_file, save_file

from edgediff.offload.dqn.env import ScopeConfig
from edgediff.offload.dqn.network import QNetwork, SetQNetwork
from edgediff.offload.dqn.train import DqnConfig, make_network
from edgediff.offload.policies import CheckpointError

SHIPPED = Path(__file__).parent / "checkpoints" / "any-size"
PAPER = Path(__file__).parent / "checkpoints" / "general"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def save_checkpoint(
    directory: str | Path, network: QNetwork | SetQNetwork, config: DqnConfig, scope: ScopeConfig, training: dict
) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(directory / WEIGHTS))
    meta = {"dqn": asdict(config), "scope": asdict(scope), "max_users": network.max_users, "training": training}
    (directory / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def load_checkpoint(path: str | Path | None = None) -> tuple[QNetwork | SetQNetwork, DqnConfig, dict]:
    """``(network in eval mode, its DqnConfig, the whole config.json)``; default: the shipped one."""
    directory = Path(path) if path is not None else SHIPPED
    if directory.is_file():
        directory = directory.parent
    weights, config_path = directory / WEIGHTS, directory / CONFIG
    for needed in (weights, config_path):
        if not needed.is_file():
            raise CheckpointError(f"checkpoint {directory}: missing {needed.name}")
    try:
        meta = json.loads(config_path.read_text())
        known = {f.name for f in fields(DqnConfig)}
        config = DqnConfig(**{k: v for k, v in meta["dqn"].items() if k in known})
        network = make_network(config, int(meta["max_users"] or 0))
        network.load_state_dict(load_file(str(weights)))
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {directory}: {err}".splitlines()[0]) from None
    network.eval()
    return network, config, meta
