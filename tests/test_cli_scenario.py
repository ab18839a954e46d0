"""``--scenario`` and ``--instances`` of ``edgediff instance`` / ``compare``, and unit warnings."""

import csv
import json
from pathlib import Path

import pytest

from edgediff.cli import main
from helpers import run_cli

EXAMPLES = Path(__file__).parents[1] / "examples" / "scenarios"


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir()))
def test_shipped_scenarios_run_through_instance_solve_and_compare(example, tmp_path, capsys):
    path = tmp_path / "inst.json"
    assert main(["instance", "--scenario", str(EXAMPLES / example), "--seed", "3", "-o", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {path}")
    data = json.loads(path.read_text())
    assert main(["solve", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["granted"] <= data["B_max"]
    assert main(["compare", "--scenario", str(EXAMPLES / example), "--users", "3", "--cases", "2",
                 "--policies", "exact,b1", "--json"]) == 0  # fmt: skip
    rows = json.loads(capsys.readouterr().out)
    assert [(r["users"], r["gpus"], r["policy"]) for r in rows] == [(3, data["G"], "exact"), (3, data["G"], "b1")]


def test_instance_scenario_options_override_and_default(tmp_path):
    scenario = EXAMPLES / "campus-phones.toml"
    path = tmp_path / "i.json"
    assert main(["instance", "--scenario", str(scenario), "--seed", "1", "-o", str(path)]) == 0
    data = json.loads(path.read_text())
    assert (len(data["users"]), data["G"], data["B_max"], data["N"]) == (4, 1, 8, 50)
    assert main(["instance", "--scenario", str(scenario), "--seed", "1", "--users", "9", "--gpus", "2",
                 "--bmax", "0", "-o", str(path)]) == 0  # fmt: skip
    data = json.loads(path.read_text())
    assert (len(data["users"]), data["G"], data["B_max"]) == (9, 2, 0)


def test_default_compare_is_unchanged_by_the_paper_scenario(capsys):
    args = ["compare", "--users", "5", "--cases", "3", "--policies", "exact,b2", "--json", "--seed", "4"]
    assert main(args) == 0
    default = capsys.readouterr().out
    assert main([*args, "--scenario", str(EXAMPLES / "paper-default.json")]) == 0
    drawn = json.loads(capsys.readouterr().out)
    assert [r["mean_objective"] for r in drawn] == [r["mean_objective"] for r in json.loads(default)]


def test_compare_instances_directory_scores_each_file_against_its_own_exact(tmp_path, capsys):
    for seed, users in [(1, 4), (2, 4), (3, 6)]:
        main(["instance", "--users", str(users), "--seed", str(seed), "-o", str(tmp_path / f"i{seed}.json")])
    (tmp_path / "notes.txt").write_text("not an instance")
    out = tmp_path / "out"
    assert main(["compare", "--instances", str(tmp_path), "--policies", "exact,b1,b3", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "compare.csv")))
    assert [(r["users"], r["policy"], r["cases"]) for r in rows] == [
        (u, p, c) for u, c in (("4", "2"), ("6", "1")) for p in ("exact", "b1", "b3")
    ]
    score = {(r["users"], r["policy"]): float(r["mean_score"]) for r in rows}
    assert score["4", "exact"] == 1.0 and score["4", "b3"] == 0.0
    # the score of a one-file group is that file's: recompute it from solve
    capsys.readouterr()
    objective = {}
    for policy in ("exact", "b1", "b3"):
        main(["solve", str(tmp_path / "i3.json"), "--policy", policy, "--json"])
        objective[policy] = json.loads(capsys.readouterr().out)["objective"]
    expected = (objective["b1"] - objective["b3"]) / (objective["exact"] - objective["b3"])
    assert score["6", "b1"] == pytest.approx(expected)


@pytest.mark.parametrize(
    "content,args,message",
    [
        ('{"alpha": {"distribution": "uniform", "low": 1}}', ["instance", "--seed", "1", "--scenario", "{f}"],
         "alpha.uniform.high"),
        ('{"devices": [{"profile": "row42"}]}', ["compare", "--scenario", "{f}"], "devices.0"),
        ("{}", ["instance", "--seed", "1"], "--users"),
        ("{}", ["compare", "--instances", "{d}", "--users", "4"], "--users"),
        ("{}", ["compare", "--instances", "{d}/nowhere"], "not a directory"),
        ('{"users": []}', ["compare", "--instances", "{d}"], "users"),
        ("{}", ["compare", "--instances", "{d}", "--scenario", "{f}"], "not allowed with"),
    ],
)  # fmt: skip
@pytest.mark.slow
def test_bad_scenario_input_is_one_line_exit_2(tmp_path, content, args, message):
    path = tmp_path / "s.json"
    path.write_text(content)
    result = run_cli(*[a.format(f=path, d=tmp_path) for a in args])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr


@pytest.mark.slow
def test_milliseconds_in_an_instance_warn_in_one_line_and_still_run(tmp_path):
    users = [{"id": f"u{i}", "k": 195.7, "h": -67.0, "alpha": 20.0, "request_time": 0.1} for i in range(3)]
    path = tmp_path / "ms.json"
    path.write_text(json.dumps({"users": users}))
    result = run_cli("solve", str(path), "--json")
    assert result.returncode == 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "users.0" in lines[0] and "milliseconds" in lines[0] and "2 more" in lines[0]


@pytest.mark.slow
def test_calibrate_profile_is_an_instance_edge(tmp_path, capsys):
    profile = {"k": 0.0109, "h": 0.0041, "r2": 0.9967, "model": "tiny", "device": "cpu (x86_64)", "batches": [1, 2]}
    profile.update({"step_latency_s": [0.0174, 0.0257], "repeats": 7, "guidance": True, "threads": 1})
    user = {"id": "a", "k": 0.1, "h": 0.01, "alpha": 20.0, "request_time": 0.3}
    path = tmp_path / "i.json"
    path.write_text(json.dumps({"edge": profile, "users": [user]}))
    assert main(["solve", str(path), "--json"]) == 0
    path.write_text(json.dumps({"edge": {**profile, "rr2": 1.0}, "users": [user]}))
    result = run_cli("solve", str(path))
    assert result.returncode == 2 and "edge.rr2" in result.stderr
