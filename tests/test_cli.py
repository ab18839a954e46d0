import csv
import json
import re
import subprocess
import sys

import pytest

from edgediff.cli import main
from helpers import run_cli

DEFAULT_ROW = {"id": "a", "k": 0.1, "h": 0.01, "alpha": 20.0, "request_time": 0.3}


def test_instance_then_solve_json(tmp_path, capsys):
    path = tmp_path / "inst.json"
    assert main(["instance", "--users", "6", "--gpus", "4", "--bmax", "3", "--seed", "9", "-o", str(path)]) == 0
    assert capsys.readouterr().out == f"wrote {path}: 6 users, G = 4, B_max = 3, N = 200, seed 9\n"
    data = json.loads(path.read_text())
    assert len(data["users"]) == 6 and data["G"] == 4 and data["B_max"] == 3
    assert main(["solve", str(path), "--policy", "exact", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"policy", "latency_model", "objective", "granted", "decision_time_s", "users"}
    assert out["policy"] == "exact" and out["latency_model"] == "paper"
    assert set(out["users"][0]) == {"id", "granted", "split", "offloaded_steps", "latency", "pai", "utility"}
    assert out["objective"] == pytest.approx(sum(u["utility"] for u in out["users"]))
    assert out["granted"] == sum(u["granted"] for u in out["users"]) <= 3
    for u in out["users"]:
        assert u["split"] + u["offloaded_steps"] == 200


def test_solve_timeline_and_table(tmp_path, capsys):
    path = tmp_path / "inst.json"
    main(["instance", "--users", "8", "--gpus", "8", "--seed", "1", "-o", str(path)])
    capsys.readouterr()
    assert main(["solve", str(path), "--policy", "b1", "--latency-model", "timeline", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["latency_model"] == "timeline"
    assert main(["solve", str(path)]) == 0
    text = capsys.readouterr().out
    assert "policy exact" in text and "offloaded" in text


def test_instance_to_stdout_is_seeded(capsys):
    main(["instance", "--users", "3", "--gpus", "2", "--seed", "4"])
    first = capsys.readouterr().out
    main(["instance", "--users", "3", "--gpus", "2", "--seed", "4"])
    assert capsys.readouterr().out == first


@pytest.mark.parametrize(
    "content, field",
    [
        ({"users": [dict(DEFAULT_ROW, alpha=-2)]}, "users.0.alpha"),
        ({"users": [dict(DEFAULT_ROW, k=float("inf"))]}, "users.0.k"),
        ({"users": []}, "users"),
        ({"G": 8}, "users"),
        ({"users": [DEFAULT_ROW, DEFAULT_ROW]}, "users.1.id"),
        ({"N_hat": 250, "users": [DEFAULT_ROW]}, "N_hat"),
        ('{"users": [', "not valid JSON"),
        ("[1, 2]", "instance"),
    ],
)
@pytest.mark.slow
def test_invalid_instance_file_exit_2_one_line(tmp_path, content, field):
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    result = run_cli("solve", str(path), "--json")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["solve", "missing.json"],
        ["solve", "{f}", "--policy", "nope"],
        ["instance", "--users", "0", "--seed", "1"],
        ["compare", "--users", "a,b"],
        ["solve", "{f}", "--time-limit", "-1"],
        ["compare", "--policies", "exact,zzz"],
    ],
)
@pytest.mark.slow
def test_bad_arguments_exit_2(tmp_path, args):
    path = tmp_path / "ok.json"
    path.write_text(json.dumps({"users": [DEFAULT_ROW]}))
    result = run_cli(*[a.format(f=path) for a in args])
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stderr.strip()


@pytest.mark.slow
def test_compare_writes_csv_and_json(tmp_path, capsys):
    args = ["compare", "--users", "4,6", "--gpus", "8", "--cases", "3", "--policies", "exact,ga,b2", "--seed", "1"]
    assert main([*args, "--out", str(tmp_path), "--plot"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "compare.csv")))
    columns = ["users", "gpus", "policy", "cases", "mean_objective", "mean_score", "mean_decision_time_s", "note"]
    spread = ["score_p10", "score_p90", "decision_time_p10_s", "decision_time_p90_s"]
    assert list(rows[0]) == columns + spread and all(r["note"] == "" for r in rows)  # every policy decided every case
    for r in rows:  # the mean lies within the spread over cases
        assert float(r["score_p10"]) - 1e-9 <= float(r["mean_score"]) <= float(r["score_p90"]) + 1e-9
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [(r["users"], r["policy"]) for r in rows] == [(u, p) for u in ("4", "6") for p in ("exact", "ga", "b2")]
    exact = [r for r in rows if r["policy"] == "exact"]
    assert all(float(r["mean_score"]) == pytest.approx(1.0) for r in exact)
    for r in rows:
        best = next(e for e in exact if e["users"] == r["users"])
        assert float(r["mean_objective"]) <= float(best["mean_objective"]) + 1e-9
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert [(str(r["users"]), r["policy"]) for r in as_json] == [(r["users"], r["policy"]) for r in rows]
    assert as_json[0]["mean_objective"] == pytest.approx(float(rows[0]["mean_objective"]))


@pytest.mark.slow
def test_demo_prints_every_policy(capsys):
    assert main(["demo", "--seed", "2", "--no-service"]) == 0
    out = capsys.readouterr().out
    assert "The optimal decision (exact)" in out
    for name in ("exact", "ga", "milp", "b1", "b2", "b3", "timeline"):
        assert re.search(rf"\n *{name}  ", out), name


@pytest.mark.slow
def test_import_stays_light():
    code = (
        "import sys, edgediff, edgediff.core.generator, edgediff.offload.policies as p, edgediff.cli\n"
        "inst = edgediff.core.generator.random_instance(5, 8, seed=0)\n"
        "p.make_policy('exact').decide(inst)\n"
        "heavy = [m for m in ('torch', 'diffusers', 'fastapi', 'scipy.optimize') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_policy_option_reaches_the_policy(tmp_path, capsys):
    path = tmp_path / "inst.json"
    assert main(["instance", "--users", "6", "--seed", "4", "-o", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {path}")
    assert main(["solve", str(path), "--policy", "ga", "--json"]) == 0
    default = json.loads(capsys.readouterr().out)
    args = ["solve", str(path), "--policy", "ga", "--policy-option", "population=100", "--json"]
    assert main(args) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["objective"] == pytest.approx(default["objective"])  # the default population, given explicitly
    grid = ["solve", str(path), "--policy", "timeline", "--policy-option", "split_grid=[80,200]", "--json"]
    assert main(grid) == 0
    assert {u["split"] for u in json.loads(capsys.readouterr().out)["users"]} <= {80, 200}


@pytest.mark.parametrize(
    "args, message",
    [
        (["solve", "{f}", "--policy", "ga", "--policy-option", "populaton=5"], "takes no option 'populaton'"),
        (["solve", "{f}", "--policy", "timeline", "--policy-option", "split_grid=[1]"], "split_grid must be"),
        (["solve", "{f}", "--policy", "timeline", "--policy-option", "split_grid=8"], "a list of whole split points"),
        (["solve", "{f}", "--policy", "timeline", "--policy-option", "split_grid=[80.5]"], "whole split points"),
        (["compare", "--policies", "exact,b1", "--policy-option", "population=5"], "takes the option 'population'"),
        (["cache-sim", "--policy", "lru", "--policy-option", "x=1"], "takes no option 'x'"),
    ],
)
@pytest.mark.slow
def test_bad_policy_option_is_one_line_exit_2(tmp_path, args, message):
    path = tmp_path / "ok.json"
    path.write_text(json.dumps({"users": [DEFAULT_ROW]}))
    result = run_cli(*[a.format(f=path) for a in args])
    assert result.returncode == 2 and message in result.stderr
    assert result.stderr.startswith(f"edgediff {args[0]}: error: ") and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_policy_option_needs_key_and_value(tmp_path):
    result = run_cli("solve", str(tmp_path / "x.json"), "--policy-option", "novalue")
    assert result.returncode == 2 and "expected KEY=VALUE" in result.stderr


def test_every_input_error_derives_from_input_error():
    from edgediff.cache.config import CacheConfigError
    from edgediff.cache.policies import UnknownCachePolicy
    from edgediff.cli import UsageError
    from edgediff.core.instance import InstanceError
    from edgediff.core.model import DecisionError
    from edgediff.errors import InputError
    from edgediff.offload.policies import CheckpointError, SolverError, UnknownPolicy, UnknownPolicyOption
    from edgediff.personalize.classifier import ClassifierError
    from edgediff.reproduce import UnknownFigure
    from edgediff.runtime.models import ModelLoadError
    from edgediff.runtime.payload import PayloadError
    from edgediff.runtime.request import RequestError
    from edgediff.service.config import ServiceConfigError

    errors = [
        CacheConfigError,
        UnknownCachePolicy,
        UsageError,
        InstanceError,
        DecisionError,
        CheckpointError,
        UnknownPolicy,
        UnknownPolicyOption,
        ClassifierError,
        UnknownFigure,
        ModelLoadError,
        PayloadError,
        RequestError,
        ServiceConfigError,
    ]
    assert all(issubclass(e, InputError) and issubclass(e, ValueError) for e in errors)
    assert not issubclass(SolverError, InputError)  # not the user's fault: exit 1


def test_no_cli_module_over_250_lines():
    from pathlib import Path

    import edgediff.cli

    modules = list(Path(edgediff.cli.__file__).parent.glob("*.py"))
    assert len(modules) > 5
    assert {m.name: len(m.read_text().splitlines()) for m in modules if len(m.read_text().splitlines()) > 250} == {}
