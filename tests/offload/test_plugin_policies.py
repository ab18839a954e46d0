"""Your own offloading policy, by module or file, without editing the registry."""

import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgediff.core.generator import random_instance
from edgediff.core.model import DecisionError, check_decision
from edgediff.offload.policies import UnknownPolicy, UnknownPolicyOption, make_policy, policy_option_names
from helpers import run_cli

EXAMPLE = Path(__file__).parents[2] / "examples" / "policies" / "slowest_first.py"


def write(tmp_path, body: str) -> str:
    path = tmp_path / "mine.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_a_file_plugin_decides_feasibly_with_its_options():
    instance = random_instance(15, seed=4)
    policy = make_policy(f"{EXAMPLE}:solve", {"share": 0.4})
    decision = policy.decide(instance)
    check_decision(instance, decision)
    assert decision.granted_count == 6  # 0.4 x 15
    slowest = np.argsort(-(instance.k + instance.h), kind="stable")[:6]
    assert set(np.flatnonzero(decision.granted)) == set(slowest)
    assert policy_option_names(f"{EXAMPLE}:solve") == ("share",)
    with pytest.raises(UnknownPolicyOption, match="takes no option 'keep'; it takes: share"):
        make_policy(f"{EXAMPLE}:solve", {"keep": 1})


def test_a_module_plugin_is_the_same_function_as_the_registered_name():
    instance = random_instance(10, seed=1)
    mine = make_policy("edgediff.offload.baselines:solve_b1").decide(instance)
    registered = make_policy("b1").decide(instance)
    assert (mine.granted == registered.granted).all() and (mine.split == registered.split).all()


def test_an_infeasible_plugin_decision_is_refused_naming_the_constraint(tmp_path):
    over = write(
        tmp_path,
        """
        import numpy as np
        from edgediff.core.model import Decision
        def solve(instance):
            return Decision(np.ones(instance.num_users, bool), np.full(instance.num_users, instance.N_hat))
        """,
    )
    instance = random_instance(8, seed=0, B_max=3)
    with pytest.raises(DecisionError, match="infeasible decision: 8 users granted, B_max is 3"):
        make_policy(f"{over}:solve").decide(instance)


def test_a_plugin_returning_no_decision_is_refused(tmp_path):
    path = write(tmp_path, "def solve(instance):\n    return [True] * instance.num_users\n")
    with pytest.raises(DecisionError, match="returned list, not a Decision"):
        make_policy(f"{path}:solve").decide(random_instance(4, seed=0))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no.such.module:solve", "cannot import 'no.such.module'"),
        ("missing.py:solve", "no file missing.py"),
        ("edgediff.offload.baselines:nothing", "edgediff.offload.baselines has no function 'nothing'"),
        ("mygreedy", "or name your own as module:function or file.py:function"),
    ],
)
def test_a_plugin_that_cannot_be_found_is_one_clear_error(name, message):
    with pytest.raises(UnknownPolicy, match=message):
        make_policy(name)


@pytest.mark.slow
def test_the_cli_solves_and_compares_with_a_file_plugin(tmp_path):
    instance = tmp_path / "instance.json"
    assert run_cli("instance", "--users", "9", "-o", str(instance)).returncode == 0
    solved = run_cli("solve", str(instance), "--policy", f"{EXAMPLE}:solve", "--json")
    assert solved.returncode == 0, solved.stderr
    compared = run_cli("compare", "--users", "6", "--cases", "2", "--policies", f"exact,{EXAMPLE}:solve")
    assert compared.returncode == 0, compared.stderr
    assert "slowest_first.py:solve" in compared.stdout
    out = tmp_path / "twin"
    simulated = run_cli(
        "simulate", "--rate", "5", "--duration", "20", "--policy", f"{EXAMPLE}:solve", "--out", str(out)
    )
    assert simulated.returncode == 0, simulated.stderr
    assert (out / "twin.json").is_file()
    bad = write(tmp_path, "def solve(instance):\n    raise AssertionError('unreachable')\n")
    refused = run_cli("solve", str(instance), "--policy", f"{bad}:nothere")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "has no function 'nothere'" in refused.stderr


def test_a_policy_that_cannot_decide_a_case_gets_a_row_without_figures_and_the_others_run(tmp_path):
    from edgediff.offload.compare import compare

    path = write(
        tmp_path,
        """
        def solve(instance):
            if instance.num_users > 5:
                raise ValueError("takes at most 5 users")
            from edgediff.offload.baselines import solve_b1
            return solve_b1(instance)
        """,
    )
    rows = compare([4, 8], 8, 2, ["exact", f"{path}:solve", "b1"], seed=3)
    by = {(r.users, r.policy.rsplit("/", 1)[-1]): r for r in rows}
    assert by[(4, "mine.py:solve")].note == "" and by[(4, "mine.py:solve")].mean_score == pytest.approx(
        by[(4, "b1")].mean_score
    )
    failed = by[(8, "mine.py:solve")]
    assert np.isnan(failed.mean_objective) and np.isnan(failed.mean_score)
    assert failed.note == "case of 8 users: ValueError: takes at most 5 users"
    assert by[(8, "b1")].note == "" and np.isfinite(by[(8, "b1")].mean_score)


def test_the_library_compare_draws_at_the_scenario_s_b_max(monkeypatch):
    from dataclasses import replace

    from edgediff.core.scenario import PAPER_SCENARIO
    from edgediff.offload import compare as module

    seen, decide = [], module._decide

    def recording(solvers, instances):
        seen.extend(inst.B_max for inst in instances)
        return decide(solvers, instances)

    monkeypatch.setattr(module, "_decide", recording)
    scenario = replace(PAPER_SCENARIO, B_max=3)
    module.compare([6], 8, 2, ["b1"], scenario=scenario)
    module.compare([6], 8, 1, ["b1"], scenario=scenario, B_max=5)
    assert seen == [3, 3, 5]


def test_compare_plot_needs_an_output_directory(capsys):
    from edgediff.cli import main

    assert main(["compare", "--users", "4", "--cases", "1", "--plot"]) == 2
    assert "--plot draws compare.png beside compare.csv: give --out DIR" in capsys.readouterr().err
