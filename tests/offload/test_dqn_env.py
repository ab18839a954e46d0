import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from edgediff.core.generator import random_instance
from edgediff.core.model import Decision, evaluate
from edgediff.offload.dqn import ENV_ID
from edgediff.offload.dqn.env import CURRENT, DENIED, GRANTED, PENDING, EpisodeBatch, OffloadEnv, ScopeConfig
from edgediff.offload.split import optimize_splits


def run_episode(env, actions_rng, **reset):
    obs, _ = env.reset(**reset)
    trace, rewards, done, info = [obs], [], False, {}
    while not done:
        obs, reward, done, truncated, info = env.step(int(actions_rng.integers(2)))
        assert not truncated
        trace.append(obs)
        rewards.append(reward)
    return np.array(trace), np.array(rewards), info


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"state_scaling": "unit", "reward": "marginal", "features": "convex"},
        {"reward": "marginal", "features": "set"},
    ],
)
def test_env_checker_passes(options):
    check_env(gym.make(ENV_ID, **options).unwrapped, skip_render_check=True)


def test_same_seed_same_episode():
    first = run_episode(OffloadEnv(), np.random.default_rng(1), seed=7)
    second = run_episode(OffloadEnv(), np.random.default_rng(1), seed=7)
    other = run_episode(OffloadEnv(), np.random.default_rng(1), seed=8)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert first[0].shape != other[0].shape or not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("seed", range(8))
def test_rewards_add_up_to_the_scaled_objective(seed):
    """Eq. (21): the per-step rewards of an episode sum to 0.1 x its objective."""
    rng = np.random.default_rng(seed)
    instance = random_instance(
        int(rng.integers(2, 21)), int(rng.integers(1, 17)), seed=seed, B_max=int(rng.integers(1, 8))
    )
    _, rewards, info = run_episode(OffloadEnv(), rng, options={"instance": instance})
    objective = evaluate(instance, optimize_splits(instance, info["granted"])).objective
    assert info["objective"] == pytest.approx(objective, rel=1e-12, abs=1e-9)
    assert rewards.sum() == pytest.approx(0.1 * objective, rel=1e-9, abs=1e-9)
    assert info["granted"].sum() <= instance.B_max


def test_marginal_rewards_add_up_to_the_gain_over_all_local():
    rng = np.random.default_rng(3)
    instance = random_instance(15, 4, seed=3)
    _, rewards, info = run_episode(OffloadEnv(reward="marginal"), rng, options={"instance": instance})
    local = evaluate(instance, Decision.all_local(instance)).objective
    assert rewards.sum() == pytest.approx(0.1 * (info["objective"] - local), abs=1e-9)


def test_cyclic_shift_puts_the_current_user_first_and_pads():
    instance = random_instance(5, 8, seed=2)
    batch = EpisodeBatch(1, 8)
    batch.reset_slot(0, instance)
    batch.step([1])
    batch.step([0])
    local = batch.observe()[0, : 8 * 4].reshape(8, 4)
    # user 2 is current; then 3, 4, then the handled 0 (granted), 1 (denied); then padding
    assert local[:, 3].tolist() == [CURRENT, PENDING, PENDING, GRANTED, DENIED, DENIED, DENIED, DENIED]
    np.testing.assert_allclose(local[0, 0], instance.alpha[2], rtol=1e-6)
    np.testing.assert_allclose(local[3, 1], instance.local_step_latency[0], rtol=1e-6)
    assert np.all(local[5:, :3] == 0)
    glob = batch.observe()[0, 8 * 4 :]
    assert glob[[0, 3, 4, 5]].tolist() == [5, 3, 1, 1]  # B_max, pending, granted, denied


def test_constraint_aware_termination_denies_the_rest():
    instance = random_instance(10, 8, seed=4, B_max=3)
    env = OffloadEnv()
    env.reset(options={"instance": instance})
    steps, done = 0, False
    while not done:
        _, _, done, _, info = env.step(1)
        steps += 1
    assert steps == 3
    assert info["granted"].tolist() == [True] * 3 + [False] * 7


def test_scopes_sample_what_they_promise():
    rng = np.random.default_rng(0)
    gpu = [ScopeConfig(scope="gpu", gpus=5).sample(rng) for _ in range(20)]
    assert {i.G for i in gpu} == {5} and all(4 <= i.num_users <= 20 for i in gpu)
    general = [ScopeConfig().sample(rng) for _ in range(50)]
    assert len({i.G for i in general}) > 5
    one = ScopeConfig(scope="specific", users=7, gpus=3, instance_seed=11)
    a, b = one.sample(rng), one.sample(rng)
    assert a.num_users == 7 and np.array_equal(a.alpha, b.alpha)
    with pytest.raises(ValueError, match="scope"):
        ScopeConfig(scope="everything")


def test_too_many_users_is_refused():
    with pytest.raises(ValueError, match="at most 20"):
        EpisodeBatch(1, 20).reset_slot(0, random_instance(21, 8, seed=0))
