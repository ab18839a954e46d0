"""Training the PER-DQN agent (Sec. V-C-2 and VI-B-2), readable in one sitting.

The paper's hyper-parameters are the defaults of :class:`DqnConfig`. Options the paper does
not have are off by default and named: ``double_dqn``, ``dueling``, ``state_scaling="unit"``,
and ``num_envs``/``train_frequency`` (several episodes stepped together, fewer gradient
updates per transition) to make CPU training fast.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgediff.core.instance import Instance
from edgediff.core.model import Decision, evaluate
from edgediff.figure_io import Figure, pyplot, write_csv, write_figure
from edgediff.offload.dqn.env import EpisodeBatch, ScopeConfig, observation_size
from edgediff.offload.dqn.network import QNetwork, SetQNetwork
from edgediff.offload.dqn.replay import PrioritizedReplay
from edgediff.offload.exact import solve_exact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DqnConfig:
    # --- the paper's settings (Sec. VI-B-2) ---
    hidden: int = 256
    embedding_dim: int = 3
    target_update: int = 2000  # transitions between target-network copies
    memory: int = 400_000
    batch_size: int = 128
    learning_rate: float = 1e-4
    epsilon_start: float = 0.5
    epsilon_end: float = 0.001
    temperature_start: float = 5.0
    temperature_end: float = 0.01
    priority_exponent: float = 0.7
    importance_weight: float = 0.3
    priority_offset: float = 2e-5
    reward_scale: float = 0.1
    terminal_ratio: int = 7  # non-terminal transitions sampled per terminal one (1:7)
    gamma: float = 1.0
    # --- beyond the paper (off by default) ---
    double_dqn: bool = False
    dueling: bool = False
    state_scaling: str = "raw"  # "raw" (paper) or "unit"
    reward: str = "paper"  # "paper" (eq. 21) or "marginal" (change of the objective per step)
    features: str = "paper"  # "paper" or "convex" (adds the inner problem's gains to the state)
    num_envs: int = 1  # episodes stepped together
    train_frequency: int = 1  # transitions per gradient update (paper: one update per step)
    learning_starts: int = 1000  # transitions collected before the first update
    encoder: int = 32  # features="set": width of the per-user encoder (SetQNetwork)

    def __post_init__(self):
        EpisodeBatch(1, 1, **self.mdp_options)  # validates the MDP choices
        for name in ("hidden", "embedding_dim", "target_update", "memory", "batch_size", "num_envs", "encoder"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.train_frequency < 1 or self.terminal_ratio < 1:
            raise ValueError("train_frequency and terminal_ratio must be >= 1")

    @property
    def mdp_options(self) -> dict:
        return dict(
            reward_scale=self.reward_scale, state_scaling=self.state_scaling, reward=self.reward, features=self.features
        )


def make_network(config: DqnConfig, max_users: int) -> QNetwork | SetQNetwork:
    """The paper's network for ``max_users`` users, or with ``features="set"`` one for any number."""
    if config.features == "set":
        return SetQNetwork(encoder=config.encoder, hidden=config.hidden, dueling=config.dueling)
    return QNetwork(
        max_users,
        features=config.features,
        hidden=config.hidden,
        embedding_dim=config.embedding_dim,
        dueling=config.dueling,
    )


def select_actions(q: torch.Tensor, epsilon: float, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Hybrid exploration: uniform with probability epsilon, else Boltzmann over Q / temperature."""
    probs = torch.softmax(q / temperature, dim=1)[:, 1].numpy()
    actions = (rng.random(len(probs)) < probs).astype(np.int64)
    explore = rng.random(len(probs)) < epsilon
    return np.where(explore, rng.integers(0, 2, len(probs)), actions)


def greedy_rollout(q_values: Callable[[np.ndarray], np.ndarray], batch: EpisodeBatch) -> np.ndarray:
    """Run every slot's episode to its end with ``argmax Q``; returns the objectives.

    ``q_values`` maps observations to Q-values (NumPy in, NumPy out).
    """
    active = np.flatnonzero(~batch.finished())
    while active.size:
        _, done = batch.step(q_values(batch.observe(active)).argmax(axis=1), active)
        active = active[~done]
    return batch.objective(np.arange(batch.size))


def numpy_q(network: QNetwork | SetQNetwork) -> Callable[[np.ndarray], np.ndarray]:
    def q_values(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return network(torch.from_numpy(obs)).numpy()

    return q_values


@dataclass
class HeldOut:
    """Instances the agent never trains on, with their optimal and all-local objectives."""

    instances: list[Instance]
    exact: np.ndarray
    all_local: np.ndarray

    @classmethod
    def draw(cls, scope: ScopeConfig, count: int, seed: int) -> HeldOut:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE7A1]))
        instances = [scope.sample(rng) for _ in range(count)]
        exact = np.array([evaluate(i, solve_exact(i)).objective for i in instances])
        local = np.array([evaluate(i, Decision.all_local(i)).objective for i in instances])
        return cls(instances, exact, local)

    def score(self, network: QNetwork | SetQNetwork, config: DqnConfig, max_users: int) -> tuple[float, float]:
        """``(mean normalized score, mean objective)`` of the greedy policy."""
        from edgediff.offload.compare import normalized_score

        batch = EpisodeBatch(len(self.instances), max_users, **config.mdp_options)
        for slot, instance in enumerate(self.instances):
            batch.reset_slot(slot, instance)
        network.eval()
        objective = greedy_rollout(numpy_q(network), batch)
        network.train()
        return float(normalized_score(objective, self.exact, self.all_local).mean()), float(objective.mean())


@dataclass
class TrainResult:
    network: QNetwork | SetQNetwork
    episode_objectives: list[float] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)  # episode, mean_score, mean_objective
    transitions: int = 0
    updates: int = 0


def train(
    config: DqnConfig,
    scope: ScopeConfig,
    episodes: int,
    *,
    seed: int = 0,
    held_out: HeldOut | None = None,
    eval_every: int = 0,
    progress=None,
) -> TrainResult:
    """Train for ``episodes`` episodes; evaluate on ``held_out`` every ``eval_every`` episodes.

    ``progress(episodes_done)`` is called as episodes finish (for a progress bar).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xD0]))
    torch.manual_seed(seed)
    max_users = scope.max_users
    network = make_network(config, max_users)
    target = make_network(config, max_users)
    target.load_state_dict(network.state_dict())
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    size = observation_size(max_users, config.features)
    per = dict(priority_exponent=config.priority_exponent, priority_offset=config.priority_offset)
    terminal_share = 1.0 / (config.terminal_ratio + 1)
    terminal_memory = PrioritizedReplay(max(1, round(config.memory * terminal_share)), size, **per)
    step_memory = PrioritizedReplay(config.memory - terminal_memory.capacity, size, **per)
    terminal_batch = max(1, round(config.batch_size * terminal_share))

    batch = EpisodeBatch(config.num_envs, max_users, **config.mdp_options)

    def new_episode(slot: int, fraction: float) -> None:
        """A window of the curriculum stage at ``fraction``; one with no decision to make
        (possible with features="set") is drawn again."""
        batch.reset_slot(slot, scope.at(fraction).sample(rng))
        while batch.finished([slot])[0]:
            batch.reset_slot(slot, scope.at(fraction).sample(rng))

    for slot in range(batch.size):
        new_episode(slot, 0.0)
    obs = batch.observe()
    result = TrainResult(network)
    next_update, next_target_copy = config.learning_starts, config.target_update

    def learn() -> None:
        samples = []
        for memory, want in ((terminal_memory, terminal_batch), (step_memory, config.batch_size - terminal_batch)):
            if len(memory) and want:
                samples.append((memory, *memory.sample(want, config.importance_weight, rng)))
        obs_b, act_b, rew_b, next_b, done_b = (
            torch.from_numpy(np.concatenate([s[3][j] for s in samples])) for j in range(5)
        )
        weights = torch.from_numpy(np.concatenate([s[2] for s in samples]))
        q = network(obs_b).gather(1, act_b[:, None])[:, 0]
        with torch.no_grad():
            next_q = target(next_b)
            if config.double_dqn:
                best = network(next_b).argmax(dim=1, keepdim=True)
                next_value = next_q.gather(1, best)[:, 0]
            else:
                next_value = next_q.max(dim=1).values
            y = rew_b + config.gamma * (1.0 - done_b) * next_value
        td = y - q
        loss = (weights * td.pow(2)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        td = td.detach().numpy()
        start = 0
        for memory, index, _, _ in samples:
            memory.update_priorities(index, td[start : start + len(index)])
            start += len(index)
        result.updates += 1

    episodes_done = 0
    while episodes_done < episodes:
        fraction = episodes_done / episodes
        epsilon = config.epsilon_start + fraction * (config.epsilon_end - config.epsilon_start)
        temperature = config.temperature_start + fraction * (config.temperature_end - config.temperature_start)
        with torch.no_grad():
            actions = select_actions(network(torch.from_numpy(obs)), epsilon, temperature, rng)
        rewards, done = batch.step(actions)
        next_obs = batch.observe()
        for memory, rows in ((terminal_memory, done), (step_memory, ~done)):
            if rows.any():
                memory.add(obs[rows], actions[rows], rewards[rows], next_obs[rows], done[rows].astype(np.float32))
        result.transitions += batch.size

        for slot in np.flatnonzero(done).tolist():  # Python ints
            result.episode_objectives.append(float(batch.objective([slot])[0]))
            episodes_done += 1
            if progress is not None:
                progress(episodes_done)
            if held_out is not None and eval_every and episodes_done % eval_every == 0:
                score, objective = held_out.score(network, config, max_users)
                result.evaluations.append({"episode": episodes_done, "mean_score": score, "mean_objective": objective})
                log.info("episode %d: held-out mean score %.4f", episodes_done, score)
            new_episode(slot, episodes_done / episodes)
        if done.any():
            next_obs[done] = batch.observe(np.flatnonzero(done))
        obs = next_obs

        while result.transitions >= next_update:
            learn()
            next_update += config.train_frequency
        if result.transitions >= next_target_copy:
            target.load_state_dict(network.state_dict())
            next_target_copy += config.target_update * math.ceil(
                (result.transitions - next_target_copy + 1) / config.target_update
            )
    return result


# What made CPU training reach the target (docs/offloading-model.md, "Learned policy"): the
# paper's network and PER, plus double DQN, dueling heads, unit state scaling, the marginal
# reward, the convex features, 16 episodes at a time and one update per 4 steps.
_TUNED = DqnConfig(
    double_dqn=True,
    dueling=True,
    state_scaling="unit",
    reward="marginal",
    features="convex",
    num_envs=16,
    train_frequency=4,
)
PRESETS: dict[str, DqnConfig] = {
    "paper": DqnConfig(),
    "tuned": _TUNED,
    # Windows of any size (docs/offloading-model.md, "Windows of any size"): tuned's choices with
    # the set state and network (per-user encoder, pooling over users), a smaller replay memory
    # (a state holds up to 100 users) and a larger learning rate for a short CPU budget.
    "set": dataclasses.replace(_TUNED, features="set", hidden=128, memory=100_000, learning_rate=3e-4),
}


def write_learning_curve(result: TrainResult, directory, title: str, smoothing: int = 100) -> None:
    """``learning_curve.csv`` (per episode), ``evaluation.csv`` (held-out scores) and
    ``learning_curve.png`` (smoothed objective and held-out score, like the paper's Fig. 9)."""
    objectives = np.asarray(result.episode_objectives)
    window = max(1, min(smoothing, len(objectives)))
    smoothed = np.convolve(objectives, np.ones(window) / window, mode="valid")
    curve = [
        {
            "episode": episode,
            "objective": f"{value:.6g}",
            "smoothed_objective": f"{smoothed[episode - window]:.6g}" if episode >= window else "",
        }
        for episode, value in enumerate(objectives, start=1)
    ]
    write_csv(Path(directory) / "learning_curve.csv", curve, ["episode", "objective", "smoothed_objective"])
    write_csv(Path(directory) / "evaluation.csv", result.evaluations, ["episode", "mean_score", "mean_objective"])

    fig, (left, right) = pyplot().subplots(1, 2, figsize=(10, 4))
    left.plot(np.arange(window, len(objectives) + 1), smoothed)
    left.set(xlabel="episode", ylabel=f"objective (s-equivalent), mean of {window}", title="training episodes")
    if result.evaluations:
        right.plot([e["episode"] for e in result.evaluations], [e["mean_score"] for e in result.evaluations], "o-")
        right.axhline(1.0, color="grey", ls="--", label="exact (optimum)")
        right.legend()
    right.set(xlabel="episode", ylabel="normalized score (1 = exact, 0 = all-local)", title="held-out instances")
    fig.suptitle(title)
    write_figure(Figure("learning_curve", figure=fig, dpi=120), directory)
