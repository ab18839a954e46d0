"""Your own cache policy, by module or file, checked; cache scenario files; cache-sim's plot."""

import csv
import json
import textwrap
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from edgediff.cache.config import CacheConfig
from edgediff.cache.policies import (
    CacheDecisionError,
    UnknownCachePolicy,
    cache_policy_option_names,
    make_cache_policy,
)
from edgediff.cache.scenario import SECTION_OF, CacheScenarioError, cache_config_from_dict, load_cache_scenario
from edgediff.cache.simulator import simulate
from edgediff.cli import main

EXAMPLE = Path(__file__).parents[2] / "examples" / "policies" / "value_aware_cache.py"
SMALL = CacheConfig(classes=2_000, topics=80, slots=60, users=6)


def write(tmp_path, body: str) -> str:
    path = tmp_path / "mycache.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_the_shipped_example_runs_feasibly_with_its_option():
    result = simulate(SMALL, f"{EXAMPLE}:decide", seed=1, margin=2.0)
    assert result.latency.size > 0 and np.isfinite(result.latency).all()
    assert (result.stored_step <= result.stop_step).all() and result.stores > 0
    assert cache_policy_option_names(f"{EXAMPLE}:decide") == ("margin",)
    with pytest.raises(UnknownCachePolicy, match="takes no option 'keep'; it takes: margin"):
        make_cache_policy(f"{EXAMPLE}:decide", SMALL, keep=1)


def test_a_module_plugin_class_matches_the_registered_policy():
    mine = simulate(SMALL, "edgediff.cache.policies:NoCacheLocal", seed=2)
    registered = simulate(SMALL, "ncldc", seed=2)
    assert np.array_equal(mine.latency, registered.latency) and mine.hit.sum() == 0


@pytest.mark.parametrize(
    ("decision", "message"),
    [
        ("np.full(slot.n, 7), np.zeros(slot.n, int)", r"stop step m\[0\] = 7 is out of range 0..S\* \(6\)"),
        ("np.zeros(slot.n, int), np.full(slot.n, -1)", r"stored step m'\[0\] = -1 is out of range"),
        ("np.zeros(slot.n, int), np.full(slot.n, 2)", r"stored step m'\[0\] = 2 was never computed at the edge"),
        ("np.zeros(slot.n + 1, int), np.zeros(slot.n, int)", r"stop steps m: expected \d+ values \(one per request\)"),
        ("np.full(slot.n, 0.5), np.zeros(slot.n)", "stop steps m: expected integers"),
    ],
)
def test_an_infeasible_plugin_decision_is_refused_naming_the_constraint(tmp_path, decision, message):
    path = write(tmp_path, f"import numpy as np\ndef decide(slot, cfg):\n    return {decision}\n")
    with pytest.raises(CacheDecisionError, match="returned an infeasible decision at slot 0: " + message):
        simulate(SMALL, f"{path}:decide", seed=0)


def test_storing_more_than_the_cache_holds_is_refused(tmp_path):
    path = write(
        tmp_path, "import numpy as np\ndef decide(slot, cfg):\n    return np.full(slot.n, 3), np.full(slot.n, 3)\n"
    )
    one_entry = SMALL.with_(capacity_bytes=SMALL.output_bytes)
    with pytest.raises(CacheDecisionError, match="capacity exceeded: .* outputs stored this slot, the cache holds 1"):
        simulate(one_entry, f"{path}:decide", seed=0)


def test_a_plugin_class_with_its_eviction_rule_and_learning(tmp_path):
    path = write(
        tmp_path,
        """
        import numpy as np
        from edgediff.cache.policies import CachePolicy

        class Deepest(CachePolicy):
            eviction = "lru"

            def __init__(self, name, cfg, seed=0, depth=2):
                super().__init__(name, cfg, seed)
                self.depth, self.seen = depth, 0

            def decide(self, slot):
                m = np.full(slot.n, self.depth)
                return m, np.where(slot.cached_step[:, self.depth] < self.depth, m, 0)

            def learn(self, slot, m, stored):
                self.seen += slot.n
        """,
    )
    policy = make_cache_policy(f"{path}:Deepest", SMALL, depth=3)
    assert policy.eviction == "lru" and cache_policy_option_names(f"{path}:Deepest") == ("depth",)
    result = simulate(SMALL, policy, seed=0)
    assert set(result.stop_step.tolist()) == {3} and policy.inner.seen == result.latency.size
    built = type(policy.inner)("mine", SMALL, depth=7)  # built by you, outside make_cache_policy: guarded too
    with pytest.raises(CacheDecisionError, match="policy 'mine' failed at slot 0: IndexError"):
        simulate(SMALL, built, seed=0)


def test_a_plugin_that_raises_is_one_error_naming_it_and_the_slot(tmp_path):
    path = write(tmp_path, "def decide(slot, cfg):\n    raise KeyError('boom')\n")
    with pytest.raises(CacheDecisionError, match=r"mycache.py:decide' failed at slot 0: KeyError: 'boom'"):
        simulate(SMALL, f"{path}:decide", seed=0)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no.such.module:decide", "cannot import 'no.such.module'"),
        ("missing.py:decide", "no file missing.py"),
        ("edgediff.cache.policies:nothing", "has no function or class 'nothing'"),
        ("mycache", "or name your own as module:attr or file.py:attr"),
    ],
)
def test_a_plugin_that_cannot_be_found_is_one_clear_error(name, message):
    with pytest.raises(UnknownCachePolicy, match=message):
        make_cache_policy(name, SMALL)


def test_a_bad_eviction_rule_is_refused(tmp_path):
    path = write(tmp_path, "import numpy as np\ndef decide(slot, cfg):\n    return 0, 0\ndecide.eviction = 'fifo'\n")
    with pytest.raises(UnknownCachePolicy, match="eviction 'fifo' is not one of value, lru"):
        make_cache_policy(f"{path}:decide", SMALL)


def test_every_cache_parameter_has_one_section_of_the_scenario_file():
    assert set(SECTION_OF) == {f.name for f in fields(CacheConfig)}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"link": {"bandwith_min": 90}}, "link.bandwith_min: unknown field; did you mean 'bandwidth_min'?"),
        ({"catalg": {}}, "catalg: unknown field; did you mean 'catalog'?"),
        ({"edge": {"users": 4}}, r"edge.users: unknown field; it belongs in \[load\]"),
        ({"edge": {"capacity_bytes": -1}}, "edge.capacity_bytes must be >= 0, got -1"),
        ({"catalog": {"zipf_s": "high"}}, "catalog.zipf_s must be a finite number, got 'high'"),
        ({"load": 5}, "load: expected a table of users, p_req, slots"),
    ],
)
def test_a_bad_cache_scenario_names_the_field(data, message):
    with pytest.raises(CacheScenarioError, match=message):
        cache_config_from_dict(data)


@pytest.mark.slow  # matplotlib's import and the PNG
def test_a_cache_scenario_file_sets_the_parameters_and_the_options_override_it(tmp_path, capsys):
    toml = tmp_path / "campus.toml"
    toml.write_text('name = "campus"\n[load]\nusers = 4\nslots = 40\n[catalog]\nclasses = 1000\ntopics = 50\n')
    cfg = load_cache_scenario(toml)
    assert (cfg.users, cfg.slots, cfg.classes, cfg.topics, cfg.zipf_s) == (4, 40, 1000, 50, CacheConfig().zipf_s)
    as_json = tmp_path / "campus.json"
    as_json.write_text(json.dumps({"load": {"users": 4, "slots": 40}, "catalog": {"classes": 1000, "topics": 50}}))
    assert load_cache_scenario(as_json) == cfg
    png = tmp_path / "run.png"
    args = ["cache-sim", "--scenario", str(toml), "--slots", "30", "--policy", "ncldc", "--plot", str(png)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "mean_queue" in out and "s (virtual queue Q" in out and f"wrote {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["cache-sim", "--scenario", str(toml), "--slots", "30", "--policy", "ncldc", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["policy"] == "ncldc"


def test_a_run_whose_cache_never_fills_says_so(capsys):
    assert main(["cache-sim", "--slots", "20", "--users", "3", "--policy", "lru"]) == 0
    assert "note: lru: the cache never filled in 20 slots" in capsys.readouterr().out


def test_cache_sim_refuses_an_infeasible_plugin_in_one_line(tmp_path, capsys):
    path = write(
        tmp_path, "import numpy as np\ndef decide(slot, cfg):\n    return np.full(slot.n, 9), np.zeros(slot.n, int)\n"
    )
    assert main(["cache-sim", "--slots", "10", "--policy", f"{path}:decide"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stop step m[0] = 9 is out of range 0..S* (6)" in err[0]


@pytest.mark.slow  # four short runs and argparse's exit
def test_several_policies_share_the_requests_and_one_that_fails_gets_n_a(tmp_path, capsys):
    bad = write(tmp_path, "def decide(slot, cfg):\n    raise RuntimeError('no idea')\n")
    args = ["cache-sim", "--slots", "30", "--users", "4", "--policies", f"ncldc,{bad}:decide,lru", "--json"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["policy"] for r in rows] == ["ncldc", "lru"]  # the failed one has no figures
    assert main(args[:-1]) == 0
    out = capsys.readouterr().out
    assert "n/a" in out and "failed at slot 0: RuntimeError: no idea" in out and "response_s" in out
    with pytest.raises(SystemExit):  # one or the other
        main(["cache-sim", "--policy", "lru", "--policies", "lru,lfu"])


@pytest.mark.slow  # matplotlib's import
def test_a_cache_figure_whose_cache_never_filled_says_so():
    from edgediff.cache.figures import _note_never_filled
    from edgediff.figure_io import pyplot

    fig, lines = pyplot().figure(), []
    rows = [{"users": 5, "policy": "lru", "cache_full_slot": -1}, {"users": 9, "policy": "lru", "cache_full_slot": 40}]
    _note_never_filled(fig, lines, rows, "users")
    assert "never filled at users = 5:" in lines[-1] and "lru, lfu and lcbfu coincide" in lines[-1]
    assert len(fig.texts) == 1
    _note_never_filled(fig, lines, rows[1:], "users")
    assert len(lines) == 1


def test_an_installed_package_adds_a_cache_policy_name(monkeypatch):
    import edgediff.cache.policies as policies

    monkeypatch.setattr(policies, "_installed", lambda: {"mine": "edgediff.cache.policies:NoCacheLocal"})
    assert policies.cache_policy_spec("mine") == ("edgediff.cache.policies:NoCacheLocal", "installed plugin")
    assert simulate(SMALL, "mine", seed=3).hit.sum() == 0
    with pytest.raises(UnknownCachePolicy, match="choose from drc, .*, mine, or name your own"):
        policies.cache_policy_spec("yours")


def test_the_shipped_cache_scenarios_load():
    shipped = sorted((Path(__file__).parents[2] / "examples" / "cache-scenarios").glob("*"))
    assert shipped
    for path in shipped:
        cfg = load_cache_scenario(path)
        assert cfg != CacheConfig(), path.name  # it changes something


@pytest.mark.slow
def test_your_cache_policy_in_a_sweep_figure_on_your_scenario(tmp_path, capsys):
    scenario = Path(__file__).parents[2] / "examples" / "cache-scenarios" / "campus.toml"
    mine = f"{EXAMPLE}:decide"
    args = ["reproduce", "cache-fig10", "--quick", "--out", str(tmp_path), "--workers", "1"]
    assert main([*args, "--policies", mine, "--scenario", str(scenario)]) == 0
    rows = (tmp_path / "cache-fig10.csv").read_text().splitlines()
    policies = {row.split(",")[1] for row in rows[1:]}
    assert {mine, "oo"} <= policies and "lru" not in policies  # yours, oo beside, not the compared set
    summary = (tmp_path / "cache-fig10.md").read_text()
    assert "300 slots" in summary and "The cache never filled at capacity_gb = 1, 3, 5" in summary
    capsys.readouterr()
    for bad, message in (
        (["cache-fig5", "--policies", mine], "cache-fig5 takes neither"),
        (["cache-fig6", "--policies", mine], "cache-fig6 sweeps drc's V and takes a scenario only"),
        (["cache-fig8", "--policies", "nope"], "nope"),
        (["fig11a", "--policies", "oo"], "oo"),  # an offloading figure takes offloading policies
    ):
        assert main(["reproduce", *bad, "--quick", "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_the_v_sweep_runs_on_your_scenario_in_worker_processes(tmp_path):
    scenario = tmp_path / "tight.toml"
    scenario.write_text("[load]\nusers = 4\nslots = 400\n\n[control]\nL_bar = 5.0\n")
    args = ["reproduce", "cache-fig6", "--quick", "--out", str(tmp_path), "--scenario", str(scenario)]
    assert main([*args, "--workers", "2"]) == 0
    rows = list(csv.DictReader((tmp_path / "cache-fig6.csv").open()))
    assert [int(float(r["V"])) for r in rows] == [1, 100, 1000, 2000]
    # L_bar = 5 s is below any latency here: the queue is active and carries the latency over L_bar
    assert all(float(r["mean_queue"]) > 0 for r in rows)
    assert "300 slots, 4 users, L_bar = 5.0 s" in (tmp_path / "cache-fig6.md").read_text()
    one = tmp_path / "one"
    assert main(["reproduce", "cache-fig6", "--quick", "--out", str(one), "--scenario", str(scenario)]) == 0
    assert (one / "cache-fig6.csv").read_text() == (tmp_path / "cache-fig6.csv").read_text()  # workers change nothing
