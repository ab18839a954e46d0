"""``edgediff train-dqn``: train on a scope, evaluate against ``exact``, write the checkpoint."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from edgediff.offload.dqn.checkpoint import save_checkpoint
from edgediff.offload.dqn.env import ScopeConfig
from edgediff.offload.dqn.train import PRESETS, HeldOut, train, write_learning_curve

log = logging.getLogger(__name__)

HELD_OUT_SEED = 10_000  # held-out instances come from their own seed stream, never trained on


def train_to_directory(
    out,
    *,
    scope: str = "general",
    gpus: int = 8,
    users: int = 20,
    instance_seed: int = 0,
    bmax_range: tuple[int, int] | None = None,
    users_range: tuple[int, int] | None = None,
    gpus_range: tuple[int, int] | None = None,
    scenario=None,
    cached_share: float = 0.0,
    curriculum: int = 1,
    episodes: int = 20000,
    preset: str = "tuned",
    seed: int = 0,
    eval_every: int | None = None,
    held_out: int = 100,
    progress: bool | None = None,
) -> dict:
    """Train, write ``model.safetensors``, ``config.json`` and the learning curve; return a summary.

    ``scenario`` (a :class:`~edgediff.core.scenario.Scenario`) draws the windows from it (its users,
    ``B_max``, ``G``, devices and alpha); ``users_range``/``gpus_range`` widen the general scope;
    ``cached_share`` of the windows carry cached steps; ``curriculum`` stages widen the user counts.
    """
    import torch
    from tqdm.auto import tqdm

    out = Path(out)
    torch.set_num_threads(1)  # small networks: one thread is as fast and leaves a core free
    # Any: mypy cannot match the keys to ScopeConfig's fields in the ** below
    ranges: dict[str, Any] = {
        k: v for k, v in (("users_range", users_range), ("gpus_range", gpus_range)) if v is not None
    }
    scope_config = ScopeConfig(
        scope=scope,
        gpus=gpus,
        users=users,
        instance_seed=instance_seed,
        bmax_range=bmax_range,
        scenario=scenario,
        cached_share=cached_share,
        curriculum_stages=curriculum,
        **ranges,
    )
    config = PRESETS[preset]
    held = HeldOut.draw(scope_config, held_out, HELD_OUT_SEED + seed)
    eval_every = eval_every or max(1, episodes // 20)
    bar = tqdm(total=episodes, desc=f"train-dqn {scope}", unit="ep", disable=None if progress is None else not progress)

    def advance(done: int) -> None:
        bar.update(done - bar.n)

    start = time.perf_counter()
    result = train(config, scope_config, episodes, seed=seed, held_out=held, eval_every=eval_every, progress=advance)
    elapsed = time.perf_counter() - start
    bar.close()
    final_score, final_objective = held.score(result.network, config, scope_config.max_users)
    summary = {
        "scope": scope,
        "scenario": None if scenario is None else (scenario.name or "unnamed"),
        "preset": preset,
        "episodes": episodes,
        "seed": seed,
        "transitions": result.transitions,
        "updates": result.updates,
        "train_time_s": round(elapsed, 1),
        "held_out_instances": held_out,
        "held_out_mean_score": round(final_score, 4),
        "held_out_mean_objective": round(final_objective, 4),
        "exact_mean_objective": round(float(held.exact.mean()), 4),
    }
    save_checkpoint(out, result.network, config, scope_config, summary)
    title = f"PER-DQN, {scope} scope, preset {preset}, {episodes} episodes (seed {seed})"
    write_learning_curve(result, out, title)
    log.info("wrote %s", out)
    return summary
