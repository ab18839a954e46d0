"""The dqn policy for windows of any size (issue 30): the ``set`` state and network, the candidate
users, the fast beam against the generic one, the shipped any-size model on 30- and 100-user
windows with cached steps, curriculum and scenario scopes, and train-dqn's new options."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from edgediff.core.generator import random_instance
from edgediff.core.model import Decision, check_decision, evaluate
from edgediff.core.scenario import PAPER_SCENARIO
from edgediff.offload.compare import normalized_score
from edgediff.offload.dqn.checkpoint import PAPER, SHIPPED, load_checkpoint, save_checkpoint
from edgediff.offload.dqn.env import (
    CURRENT,
    DENIED,
    SET_ROWS,
    SET_USER_FEATURES,
    SET_VALID,
    EpisodeBatch,
    ScopeConfig,
    candidates,
    observation_size,
    with_cached_steps,
)
from edgediff.offload.dqn.policy import SetNumpyQ, beam_search, set_beam_search
from edgediff.offload.dqn.train import PRESETS, make_network, train
from edgediff.offload.exact import gain_table, solve_exact
from edgediff.offload.policies import make_policy

SET = PRESETS["set"]
FAST_SET = replace(SET, learning_starts=64, memory=5000)


def cached_window(users: int, gpus: int, seed: int, bmax: int = 20):
    rng = np.random.default_rng(seed)
    instance = random_instance(users, gpus, seed=rng, B_max=bmax)
    hit = rng.random(users) < 0.5
    hit[0] = True
    instance = replace(instance, cached_steps=np.where(hit, rng.integers(1, 121, users), 0))
    return instance


def random_set_q(seed: int = 0) -> SetNumpyQ:
    torch.manual_seed(seed)
    return SetNumpyQ(make_network(SET, 0).eval())


def test_set_state_does_not_grow_with_the_users():
    assert observation_size(5, "set") == observation_size(100, "set") == observation_size(1000, "set")
    batch = EpisodeBatch(2, 60, **SET.mdp_options)
    small, large = random_instance(3, 8, seed=1), random_instance(60, 8, seed=2, B_max=50)
    batch.reset_slot(0, small)
    batch.reset_slot(1, large)
    obs = batch.observe()
    assert obs.shape == (2, observation_size(60, "set"))
    local = obs[:, : SET_ROWS * (SET_USER_FEATURES + 1)].reshape(2, SET_ROWS, -1)
    valid = local[..., SET_VALID]
    assert valid[0].sum() <= 3 and valid[1].sum() == SET_ROWS  # 60 users: the current one and 16 more
    assert (local[0][valid[0] == 0] == 0).all()  # padding rows are zeros
    assert local[1, 0, SET_USER_FEATURES] == 1.0 and (local[1, 1:, SET_USER_FEATURES] == 0).all()
    gains = local[1, 1:, 4]
    assert (np.diff(gains) <= 1e-6).all()  # the pending users of largest gain, best first


def test_candidates_hold_an_optimum_and_are_few():
    for seed in range(20):
        rng = np.random.default_rng(seed)
        instance = random_instance(int(rng.integers(2, 120)), int(rng.integers(1, 17)), seed=seed, B_max=50)
        if seed % 2:
            instance = with_cached_steps(instance, rng)
        keep = candidates(gain_table(instance)[1])
        best = solve_exact(instance)
        assert not (best.granted & ~keep).any()  # the optimum's users are all candidates
        if instance.num_users >= 100:
            assert keep.sum() < 0.5 * instance.num_users


def test_set_env_denies_hopeless_users_without_a_step_and_rewards_add_up():
    instance = random_instance(40, 2, seed=4, B_max=30)
    batch = EpisodeBatch(1, 40, **SET.mdp_options)
    batch.reset_slot(0, instance)
    keep = candidates(gain_table(instance)[1])
    rng = np.random.default_rng(0)
    steps, total = 0, 0.0
    while not batch.finished([0])[0]:
        assert keep[batch.current[0]] and batch.indicator[0, batch.current[0]] == CURRENT
        reward, done = batch.step([int(rng.integers(2))], [0])
        steps, total = steps + 1, total + reward[0]
    assert steps <= keep.sum() < 40
    assert (batch.indicator[0, ~keep] == DENIED).all()
    local = evaluate(instance, Decision.all_local(instance)).objective
    assert total == pytest.approx(SET.reward_scale * (batch.objective([0])[0] - local), abs=1e-9)


def test_set_state_needs_the_marginal_reward():
    with pytest.raises(ValueError, match="marginal"):
        EpisodeBatch(1, 5, features="set", reward="paper")


def test_set_network_numpy_matches_torch_and_takes_any_padding():
    torch.manual_seed(1)
    network = make_network(SET, 0).eval()
    batch = EpisodeBatch(3, 30, **SET.mdp_options)
    for slot, users in enumerate((2, 9, 30)):
        batch.reset_slot(slot, cached_window(users, 4, slot))
    obs = batch.observe()
    with torch.no_grad():
        expected = network(torch.from_numpy(obs)).numpy()
    np.testing.assert_allclose(SetNumpyQ(network)(obs), expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the first row alone: cutting the padding changes nothing
        np.testing.assert_allclose(network(torch.from_numpy(obs[:1])).numpy(), expected[:1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("width", [1, 3, 8])
def test_fast_beam_is_the_generic_beam(width):
    q = random_set_q(2)
    rng = np.random.default_rng(width)
    for case in range(12):
        users = int(rng.integers(1, 45))
        instance = random_instance(users, int(rng.integers(1, 17)), seed=case, B_max=int(rng.integers(1, 51)))
        if case % 2:
            instance = with_cached_steps(instance, rng)
        fast, _ = set_beam_search(q, SET, instance, width)
        generic, _ = beam_search(q, SET, instance, width)
        assert (fast == generic).all()


def test_shipped_model_decides_30_and_100_users_with_cached_steps():
    policy, exact = make_policy("dqn"), make_policy("exact")
    for users, gpus, bmax in ((30, 8, 20), (100, 16, 50), (100, 2, 10)):
        instance = cached_window(users, gpus, seed=users + gpus, bmax=bmax)
        decision = policy.decide(instance)
        check_decision(instance, decision)
        assert decision.granted.sum() <= bmax
        again = policy.decide(instance)
        assert (again.granted == decision.granted).all() and (again.split == decision.split).all()
        value = evaluate(instance, decision).objective
        best = evaluate(instance, exact.decide(instance)).objective
        local = evaluate(instance, Decision.all_local(instance)).objective
        assert value <= best + 1e-9
        assert normalized_score(value, best, local) >= 0.9


def test_shipped_model_is_small_and_takes_any_size():
    assert (SHIPPED / "model.safetensors").stat().st_size < 500_000
    network, config, meta = load_checkpoint()
    assert config.features == "set" and network.max_users is None
    assert meta["scope"]["users_range"] == [2, 100] and meta["scope"]["bmax_range"] == [1, 50]
    assert load_checkpoint(PAPER)[1].features == "convex"  # the paper's figures' model is unchanged


def test_curriculum_widens_the_user_counts():
    scope = ScopeConfig(users_range=(2, 100), curriculum_stages=3)
    assert [scope.at(f).users_range for f in (0.0, 0.34, 0.7, 1.0)] == [(2, 35), (2, 68), (2, 100), (2, 100)]
    assert scope.max_users == 100 and ScopeConfig().at(0.0) == ScopeConfig()
    listed = ScopeConfig(users_choices=(50, 5, 20, 100), curriculum_stages=2)
    assert listed.at(0.1).users_choices == (5, 20) and listed.at(0.9).users_choices == (5, 20, 50, 100)


def test_scenario_scope_draws_the_scenario_and_cached_steps():
    scenario = replace(PAPER_SCENARIO, users=(7, 11), G=3, B_max=4)
    scope = ScopeConfig(scenario=scenario, cached_share=1.0)
    rng = np.random.default_rng(0)
    drawn = [scope.sample(rng) for _ in range(20)]
    assert {i.num_users for i in drawn} == {7, 11} and {i.G for i in drawn} == {3} and {i.B_max for i in drawn} == {4}
    assert sum(i.has_cached_steps for i in drawn) >= 15 and all((i.cached_steps <= i.N).all() for i in drawn)
    plain = [ScopeConfig().sample(np.random.default_rng(5)) for _ in range(2)]
    assert not plain[0].has_cached_steps and np.array_equal(plain[0].alpha, plain[1].alpha)


@pytest.mark.slow
def test_set_training_is_seeded():
    scope = ScopeConfig(users_range=(2, 30), bmax_range=(1, 10), cached_share=0.5, curriculum_stages=2)
    config = replace(FAST_SET, learning_starts=32, num_envs=8)
    a, b = train(config, scope, 10, seed=1), train(config, scope, 10, seed=1)
    assert a.updates > 0 and a.episode_objectives == b.episode_objectives
    for x, y in zip(a.network.parameters(), b.network.parameters()):
        assert torch.equal(x, y)


def test_set_checkpoint_round_trip(tmp_path):
    scope = ScopeConfig(users_range=(2, 12), cached_share=0.5)
    result = train(FAST_SET, scope, 10, seed=0)
    save_checkpoint(tmp_path, result.network, FAST_SET, scope, {"note": "test"})
    policy = make_policy("dqn", checkpoint=str(tmp_path))
    instance = cached_window(40, 8, 3)  # larger than any window it trained on
    check_decision(instance, policy.decide(instance))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "edgediff", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_train_dqn_from_a_scenario(tmp_path):
    scenario = tmp_path / "campus.json"
    scenario.write_text(json.dumps({"name": "campus", "users": [3, 6], "G": 2, "B_max": 3}))
    out = tmp_path / "run"
    done = run_cli(
        "train-dqn", "--scenario", str(scenario), "--preset", "set", "--episodes", "40", "--held-out", "3",
        "--cached-share", "0.5", "--curriculum", "2", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["scenario"] == "campus"
    meta = json.loads((out / "config.json").read_text())
    assert meta["scope"]["users_choices"] == [3, 6] and meta["scope"]["scenario"]["G"] == 2
    solved = run_cli("compare", "--users", "30", "--cases", "2", "--policies", "dqn,exact", "--checkpoint", str(out))
    assert solved.returncode == 0, solved.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scenario", "nowhere.json"], "cannot read scenario file"),
        (["--cached-share", "2"], "--cached-share"),
        (["--users-range", "5,2"], "--users-range"),
        (["--scenario", "SCENARIO", "--users-range", "2,9"], "--scenario sets"),
        (["--scenario", "BAD"], "G: Input should be greater than or equal to 1"),
    ],
)
def test_cli_train_dqn_bad_input(tmp_path, capsys, args, message):
    from edgediff.cli import main

    good, bad = tmp_path / "s.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"users": [3]}))
    bad.write_text(json.dumps({"users": [3], "G": 0}))
    args = [{"SCENARIO": str(good), "BAD": str(bad)}.get(a, a) for a in args]
    try:
        code = main(["train-dqn", *args, "--episodes", "5", "--out", str(tmp_path / "o")])
    except SystemExit as exit:  # argparse's errors
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o" / "model.safetensors").exists()
