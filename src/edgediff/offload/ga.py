"""``ga``: the paper's genetic-algorithm comparison (population 100, 200 generations).

A chromosome is the grant vector; its fitness is the (P1) objective with optimized
splits. Since optimal splits depend only on the number of granted users, the fitness
of a whole population is one lookup into the ``exact`` gain table, vectorized.
Infeasible children (more than ``B_max`` grants) are repaired by dropping random grants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgediff.core.instance import Instance
from edgediff.core.model import Decision
from edgediff.errors import InputError
from edgediff.offload.exact import decision_from_table, gain_table


@dataclass(frozen=True)
class GaConfig:
    """GA hyper-parameters; each is a ``ga`` policy option (``make_policy("ga", population=50)``)."""

    population: int = 100
    generations: int = 200
    crossover_rate: float = 0.9
    tournament: int = 2
    elites: int = 2

    def __post_init__(self):
        if self.population < 2 or self.generations < 0 or self.tournament < 1:
            raise InputError("population >= 2, generations >= 0 and tournament >= 1 are required")
        if not 0 <= self.elites <= self.population:
            raise InputError("elites must lie in [0, population]")


def _repair(pop: np.ndarray, limit: int, rng: np.random.Generator) -> None:
    """Drop random grants from individuals that exceed ``limit`` (in place)."""
    over = np.flatnonzero(pop.sum(axis=1) > limit)
    for row in over:
        on = np.flatnonzero(pop[row])
        pop[row, rng.choice(on, size=on.size - limit, replace=False)] = False


def solve_ga(instance: Instance, seed: int = 0, config: GaConfig = GaConfig()) -> Decision:
    rng = np.random.default_rng(seed)
    num_users, limit = instance.num_users, instance.max_granted
    if limit == 0:
        return Decision.all_local(instance)
    split, gain = gain_table(instance)
    gain0 = np.concatenate([np.zeros((num_users, 1)), gain], axis=1)  # column b = b granted

    def fitness(pop: np.ndarray) -> np.ndarray:
        b = pop.sum(axis=1)
        return (pop * gain0[:, b].T).sum(axis=1)  # objective minus the constant sum of V_d

    pop = rng.random((config.population, num_users)) < rng.random((config.population, 1))
    _repair(pop, limit, rng)
    fit = fitness(pop)
    for _ in range(config.generations):
        contenders = rng.integers(config.population, size=(2, config.population, config.tournament))
        parents = [c[np.arange(config.population), fit[c].argmax(axis=1)] for c in contenders]
        mask = rng.random((config.population, num_users)) < 0.5
        cross = rng.random((config.population, 1)) < config.crossover_rate
        children = np.where(mask & cross, pop[parents[1]], pop[parents[0]])
        children ^= rng.random(children.shape) < 1.0 / num_users
        _repair(children, limit, rng)
        elites = np.argsort(-fit, kind="stable")[: config.elites]
        children[: config.elites] = pop[elites]
        pop, fit = children, fitness(children)

    return decision_from_table(instance, pop[int(fit.argmax())], split)
