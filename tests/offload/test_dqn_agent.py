import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from edgediff.core.generator import random_instance
from edgediff.core.model import check_decision, evaluate
from edgediff.offload.compare import normalized_score
from edgediff.offload.dqn.checkpoint import PAPER, SHIPPED, load_checkpoint, save_checkpoint
from edgediff.offload.dqn.env import EpisodeBatch, ScopeConfig, observation_size
from edgediff.offload.dqn.train import PRESETS, DqnConfig, HeldOut, make_network, select_actions, train
from edgediff.offload.policies import CheckpointError, make_policy
from helpers import run_cli

FAST = replace(PRESETS["tuned"], learning_starts=64, memory=5000)


def weights_of(network):
    return torch.cat([p.detach().flatten() for p in network.parameters()])


def test_paper_defaults_are_the_config_defaults():
    c = DqnConfig()
    assert (c.hidden, c.embedding_dim, c.target_update, c.memory, c.batch_size) == (256, 3, 2000, 400_000, 128)
    assert (c.learning_rate, c.epsilon_start, c.epsilon_end, c.temperature_start, c.temperature_end) == (
        1e-4, 0.5, 0.001, 5.0, 0.01,
    )  # fmt: skip
    assert (c.priority_exponent, c.importance_weight, c.priority_offset, c.reward_scale) == (0.7, 0.3, 2e-5, 0.1)
    assert (c.terminal_ratio, c.gamma, c.double_dqn, c.dueling, c.reward) == (7, 1.0, False, False, "paper")


def test_network_shape_follows_the_paper():
    net = make_network(DqnConfig(), 20)
    assert net.embedding.num_embeddings == 4 and net.embedding.embedding_dim == 3
    widths = [m.out_features for m in net.body if isinstance(m, torch.nn.Linear)]
    assert widths == [256, 256, 256] and net.head.out_features == 2
    assert net(torch.zeros(5, observation_size(20))).shape == (5, 2)


def test_exploration_extremes():
    rng = np.random.default_rng(0)
    q = torch.tensor([[0.0, 1.0]] * 2000)
    assert select_actions(q, 0.0, 1e-3, rng).mean() == 1.0  # greedy
    assert abs(select_actions(q, 1.0, 1e-3, rng).mean() - 0.5) < 0.05  # uniform


@pytest.mark.slow
def test_same_seed_same_training():
    scope = ScopeConfig(scope="gpu", gpus=4, users_range=(4, 8))
    a = train(FAST, scope, 40, seed=3)
    b = train(FAST, scope, 40, seed=3)
    c = train(FAST, scope, 40, seed=4)
    assert a.updates > 0 and a.episode_objectives == b.episode_objectives
    assert torch.equal(weights_of(a.network), weights_of(b.network))
    assert not torch.equal(weights_of(a.network), weights_of(c.network))


@pytest.mark.slow
def test_short_training_beats_a_random_policy_on_a_fixed_instance():
    scope = ScopeConfig(scope="specific", users=12, gpus=8, instance_seed=5)
    config = replace(PRESETS["tuned"], learning_starts=128, num_envs=8, train_frequency=2)
    result = train(config, scope, 300, seed=0)
    held = HeldOut.draw(scope, 1, 0)
    trained = held.score(result.network, config, scope.max_users)[1]
    rng = np.random.default_rng(0)
    batch = EpisodeBatch(200, 12)
    instance = held.instances[0]
    for slot in range(200):
        batch.reset_slot(slot, instance)
    active = np.arange(200)
    while active.size:
        _, done = batch.step(rng.integers(0, 2, active.size), active)
        active = active[~done]
    random_mean = batch.objective(np.arange(200)).mean()
    assert trained > random_mean


def test_checkpoint_round_trip(tmp_path):
    scope = ScopeConfig(scope="gpu", gpus=2, users_range=(4, 6))
    result = train(FAST, scope, 10, seed=0)
    save_checkpoint(tmp_path, result.network, FAST, scope, {"note": "test"})
    network, config, meta = load_checkpoint(tmp_path)
    assert config == FAST and meta["training"] == {"note": "test"} and meta["max_users"] == 6
    obs = torch.rand(4, observation_size(6, FAST.features))
    assert torch.equal(network(obs), result.network.eval()(obs))


def test_bad_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        load_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("checkpoint", [None, str(PAPER)])
def test_shipped_checkpoint_decides_well(checkpoint):
    assert (SHIPPED / "model.safetensors").stat().st_size < 5_000_000
    policy = make_policy("dqn", checkpoint=checkpoint)
    scores = []
    for seed in range(30):
        instance = random_instance(4 + seed % 17, [2, 8, 16][seed % 3], seed=seed)
        decision = policy.decide(instance)
        check_decision(instance, decision)
        value = evaluate(instance, decision).objective
        exact = evaluate(instance, make_policy("exact").decide(instance)).objective
        local = evaluate(instance, make_policy("b3").decide(instance)).objective
        assert value <= exact + 1e-9
        scores.append(normalized_score(value, exact, local))
    assert np.mean(scores) >= 0.9


@pytest.mark.slow
def test_cli_solve_with_dqn_and_bad_checkpoint(tmp_path):
    path = tmp_path / "inst.json"
    assert run_cli("instance", "--users", "10", "--seed", "2", "-o", str(path)).returncode == 0
    done = run_cli("solve", str(path), "--policy", "dqn", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["policy"] == "dqn"
    bad = run_cli("solve", str(path), "--policy", "dqn", "--checkpoint", str(tmp_path / "nope"))
    assert bad.returncode == 2 and "missing model.safetensors" in bad.stderr and "Traceback" not in bad.stderr
    big = tmp_path / "big.json"
    run_cli("instance", "--users", "25", "--seed", "2", "-o", str(big))
    assert run_cli("solve", str(big), "--policy", "dqn").returncode == 0  # the shipped model takes any size
    refused = run_cli("solve", str(big), "--policy", "dqn", "--checkpoint", str(PAPER))
    assert refused.returncode == 2 and "at most 20 users" in refused.stderr


@pytest.mark.slow
def test_cli_train_dqn_writes_checkpoint_and_curve(tmp_path):
    out = tmp_path / "run"
    done = run_cli(
        "train-dqn", "--scope", "gpu", "--gpus", "4", "--episodes", "60", "--held-out", "5", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["scope"] == "gpu" and summary["episodes"] == 60
    for name in ("model.safetensors", "config.json", "learning_curve.csv", "evaluation.csv", "learning_curve.png"):
        assert (out / name).stat().st_size > 0
    rows = (out / "learning_curve.csv").read_text().splitlines()
    assert rows[0] == "episode,objective,smoothed_objective" and len(rows) == 61
    assert run_cli("train-dqn", "--scope", "nowhere", "--out", str(out)).returncode == 2
    assert run_cli("train-dqn", "--episodes", "0", "--out", str(out)).returncode == 2


def test_numpy_forward_matches_torch():
    from edgediff.offload.dqn.policy import NumpyQ

    for config in (DqnConfig(), PRESETS["tuned"]):
        torch.manual_seed(0)
        network = make_network(config, 9).eval()
        obs = torch.rand(6, observation_size(9, config.features)) * 3
        block = network.local_features + 1
        obs[:, network.local_features : 9 * block : block] = torch.randint(0, 4, (6, 9)).float()
        with torch.no_grad():
            expected = network(obs).numpy()
        np.testing.assert_allclose(NumpyQ(network)(obs.numpy()), expected, rtol=1e-5, atol=1e-5)


def test_beam_width_one_is_the_greedy_agent():
    from edgediff.offload.dqn.policy import _load
    from edgediff.offload.dqn.train import greedy_rollout

    q_function, config = _load(str(PAPER))  # the paper's network (any-size: test_dqn_any_size.py)
    policy = make_policy("dqn", beam_width=1, checkpoint=str(PAPER))
    for seed in range(10):
        instance = random_instance(6 + seed, 1 + seed, seed=seed, B_max=1 + seed % 5)
        batch = EpisodeBatch(1, q_function.max_users, **config.mdp_options)
        batch.reset_slot(0, instance)
        greedy = greedy_rollout(q_function, batch)[0]
        assert evaluate(instance, policy.decide(instance)).objective == pytest.approx(greedy, abs=1e-9)
        assert (policy.decide(instance).granted == batch.granted_users(0)).all()


@pytest.mark.slow
def test_a_wider_beam_finds_better_grant_sets_on_small_windows():
    # small B_max is where the greedy agent errs most (a wrong early grant ends the episode)
    greedy, beam = make_policy("dqn", beam_width=1, checkpoint=str(PAPER)), make_policy("dqn", checkpoint=str(PAPER))
    exact = make_policy("exact")
    rng = np.random.default_rng(11)
    scores = {"greedy": [], "beam": []}
    for _case in range(40):
        users, gpus, bmax = int(rng.integers(12, 21)), int(rng.integers(1, 17)), int(rng.integers(1, 6))
        instance = random_instance(users, gpus, seed=rng, B_max=bmax)
        best = evaluate(instance, exact.decide(instance)).objective
        local = evaluate(instance, make_policy("b3").decide(instance)).objective
        for name, policy in (("greedy", greedy), ("beam", beam)):
            decision = policy.decide(instance)
            check_decision(instance, decision)
            value = evaluate(instance, decision).objective
            assert value <= best + 1e-9
            scores[name].append(normalized_score(value, best, local))
    assert np.mean(scores["beam"]) > np.mean(scores["greedy"])
    assert np.sum(np.array(scores["beam"]) > np.array(scores["greedy"]) + 1e-9) >= 3


def test_copy_slots_continues_the_same_episode():
    batch = EpisodeBatch(2, 20)
    other = EpisodeBatch(2, 20)
    instance = random_instance(8, 4, seed=5, B_max=3)
    batch.reset_slot(0, instance)
    batch.step([0], [0])
    other.copy_slots(batch, [0, 0], [0, 1])
    for action in (1, 0, 1):
        batch.step([action], [0])
        other.step([action, action], [0, 1])
    assert other.objective([0, 1]) == pytest.approx([batch.objective([0])[0]] * 2)
    assert (other.indicator[1] == batch.indicator[0]).all()


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_bad_beam_widths_are_refused(bad):
    with pytest.raises(ValueError, match="beam_width"):
        make_policy("dqn", beam_width=bad)
