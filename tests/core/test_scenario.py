import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgediff.core.generator import random_instance
from edgediff.core.instance import INTERMEDIATE_BITS, PROMPT_BITS, Instance
from edgediff.core.pai import PaiCurve
from edgediff.core.profiles import DEFAULT_EDGE, PRESETS, PROFILE_TABLE, USER_ROWS
from edgediff.core.scenario import (
    PAPER_SCENARIO,
    ScenarioError,
    alpha_interval,
    draw_instance,
    load_scenario,
    scenario_from_dict,
)

EXAMPLES = Path(__file__).parents[2] / "examples" / "scenarios"


def _reference_random_instance(num_users, gpus, seed, B_max=20):
    """The distribution as the package drew it before scenarios existed, line for line."""
    rng = np.random.default_rng(seed)
    weights = np.linspace(1.0, 2.0, USER_ROWS.size) / np.linspace(1.0, 2.0, USER_ROWS.size).sum()
    rows = rng.choice(USER_ROWS, size=num_users, p=weights)
    k, h = PROFILE_TABLE[rows, 0], PROFILE_TABLE[rows, 1]
    request_time = rng.uniform(0.0, 1.0, size=num_users)
    lo, hi = alpha_interval(k + h, gpus, PaiCurve(), 80, 200, DEFAULT_EDGE)
    alpha = np.maximum(rng.uniform(lo, hi), 1e-6)
    return Instance(
        ids=tuple(f"u{i}" for i in range(num_users)),
        k=k,
        h=h,
        alpha=alpha,
        request_time=request_time,
        prompt_bits=np.full(num_users, float(PROMPT_BITS)),
        intermediate_bits=np.full(num_users, float(INTERMEDIATE_BITS)),
        B_max=B_max,
        G=gpus,
    )


@pytest.mark.parametrize("users,gpus,seed,bmax", [(1, 8, 0, 20), (12, 4, 7, 20), (300, 16, 3, 5), (20, 1, 11, 0)])
def test_paper_scenario_is_random_instance_bit_for_bit(users, gpus, seed, bmax):
    expected = _reference_random_instance(users, gpus, seed, bmax).to_dict()
    assert random_instance(users, gpus, seed=seed, B_max=bmax).to_dict() == expected
    assert draw_instance(replace(PAPER_SCENARIO, G=gpus, B_max=bmax), users, seed).to_dict() == expected
    shipped = replace(load_scenario(EXAMPLES / "paper-default.json"), G=gpus, B_max=bmax)
    assert draw_instance(shipped, users, seed).to_dict() == expected


def test_shipped_paper_default_file_is_the_built_in_scenario():
    assert load_scenario(EXAMPLES / "paper-default.json") == PAPER_SCENARIO


def test_campus_example_loads_and_draws_what_it_says():
    s = load_scenario(EXAMPLES / "campus-phones.toml")
    assert (s.N, s.N_hat, s.G, s.B_max, s.users) == (50, 20, 1, 8, (4, 8, 16, 32))
    inst = draw_instance(s, 400, seed=1)
    assert Instance.from_dict(inst.to_dict()).to_dict() == inst.to_dict()
    pairs = {(d.k, d.h) for d in s.devices}
    assert all((k, h) in pairs for k, h in zip(inst.k, inst.h))
    phones = np.mean(inst.k == 0.85)
    assert 0.5 < phones < 0.7  # weight 6 of 10
    assert 4.0 < np.median(inst.alpha) < 6.0  # log-normal, median 5 s
    assert np.all(inst.request_time < s.K)


def test_alpha_distributions_and_device_mix():
    base = {"devices": [{"k": 0.2, "h": 0.0}], "users": 3}
    fixed = draw_instance(scenario_from_dict({**base, "alpha": {"distribution": "fixed", "value": 7.5}}), 50, 0)
    assert np.all(fixed.alpha == 7.5) and np.all(fixed.k == 0.2)
    uni = draw_instance(scenario_from_dict({**base, "alpha": {"distribution": "uniform", "low": 2, "high": 3}}), 500, 0)
    assert uni.alpha.min() >= 2 and uni.alpha.max() <= 3 and uni.alpha.std() > 0.2
    s = scenario_from_dict(
        {"users": {"start": 2, "stop": 10, "step": 4}, "edge": "row1", "devices": [{"profile": "row5"}]}
    )
    assert s.users == (2, 6, 10) and s.edge == PRESETS["row1"] and s.devices == (PRESETS["row5"],)


@pytest.mark.parametrize(
    "data,field",
    [
        ({"alpha": {"distribution": "uniform", "low": 1}}, "alpha.uniform.high"),
        ({"alpha": {"distribution": "gamma"}}, "alpha"),
        ({"alpha": {"distribution": "uniform", "low": 3, "high": 2}}, "alpha.uniform"),
        ({"devices": [{"profile": "row3"}, {"profile": "row99"}]}, "devices.1"),
        ({"devices": [{"k": 0.1}]}, "devices.0"),
        ({"devices": [{"profile": "row3", "weight": 0}]}, "devices.0.weight"),
        ({"devices": []}, "devices"),
        ({"edge": "h200"}, "edge"),
        ({"users": 0}, "users.0"),
        ({"users": {"start": 5, "stop": 2}}, "users"),
        ({"N_hat": 300}, "N_hat"),
        ({"G": 0}, "G"),
        ({"pai": {"a": -1}}, "pai.a"),
        ({"usres": 4}, "usres"),
    ],
)
def test_invalid_scenario_names_the_field(data, field):
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(data)
    assert str(err.value).split(":")[0] == field


def test_bad_files(tmp_path):
    (tmp_path / "a.json").write_text("{")
    (tmp_path / "b.toml").write_text("N = ")
    with pytest.raises(ScenarioError, match="not valid JSON"):
        load_scenario(tmp_path / "a.json")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(tmp_path / "b.toml")
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.json")


def test_milliseconds_warn_once(caplog):
    with caplog.at_level(logging.WARNING):
        scenario_from_dict({"devices": [{"k": 195.7, "h": -67.0}, {"k": 0.2, "h": 0.0}]})
    assert len(caplog.records) == 1 and "devices.0" in caplog.text and "milliseconds" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_scenario(EXAMPLES / "campus-phones.toml")
        Instance.from_dict(json.loads(json.dumps(random_instance(30, 8, seed=0).to_dict())))
    assert caplog.records == []
