"""``edgediff simulate``: outputs, sweeps, and one stderr line with exit 2 on bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

from edgediff.cli import main
from edgediff.core.scenario import load_scenario
from edgediff.twin import WorkloadConfig, generate, make_site
from edgediff.twin.config import scenario_site, scenario_workload

SCENARIOS = Path(__file__).resolve().parents[2] / "examples" / "scenarios"


@pytest.mark.slow
def test_simulate_writes_the_outputs(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["simulate", "--rate", "8", "--duration", "20", "--sites", "2", "--steps", "30", "--window", "0.5",
                 "--bin", "10", "--out", str(out), "--requests-csv"])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "requests over 2 site(s)" in text and "wrote" in text
    total = json.loads((out / "twin.json").read_text())
    assert f"failed {total['failed']}, rejected (queue full) {total['rejected']}" in text
    names = {p.name for p in out.iterdir()}
    assert {"twin-sites.csv", "twin-bins.csv", "twin-requests.csv", "twin.png", "twin.md", "twin.json"} <= names
    header = next(line for line in (out / "twin.md").read_text().splitlines() if line.startswith("| site"))
    assert "| failed | rejected |" in header  # the main table shows what did not get an answer from the edge


@pytest.mark.slow
def test_simulate_json_is_seeded_and_reads_traces(tmp_path, capsys):
    args = [
        "simulate",
        "--rate",
        "6",
        "--duration",
        "15",
        "--steps",
        "20",
        "--out",
        str(tmp_path),
        "--json",
        "--seed",
        "3",
    ]
    main(args)
    first = json.loads(capsys.readouterr().out)
    main(args)
    assert json.loads(capsys.readouterr().out) == first
    trace = tmp_path / "trace.csv"
    trace.write_text('time,user,prompt_or_class,alpha,device\n0.1,ann,a cat,0.5,row9\n0.3,bob,7,0.5,"0.2,0.01"\n')
    assert main(["simulate", "--trace", str(trace), "--steps", "20", "--out", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == 2


def test_simulate_sweep(tmp_path, capsys):
    code = main(["simulate", "--sweep-policies", "exact,b1", "--sweep-windows", "0.5,1", "--rate", "5", "--duration",
                 "10", "--steps", "20", "--out", str(tmp_path), "--json"])  # fmt: skip
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["policy"], r["window_s"]) for r in rows] == [("exact", 0.5), ("b1", 0.5), ("exact", 1.0), ("b1", 1.0)]
    assert len({r["requests"] for r in rows}) == 1  # the same arrivals for every case of one workload
    assert (tmp_path / "twin-sweep.csv").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--policy", "nope"], "unknown policy 'nope'"),
        (["--edge-profile", "fast"], "profile 'fast'"),
        (["--trace", "missing.csv"], "trace missing.csv"),
        (["--device-mix", "row3=x"], "--device-mix"),
        (["--diurnal", "missing.txt"], "--diurnal missing.txt"),
        (["--alpha", "1"], "--alpha"),
        (["--sweep-policies", "exact", "--trace", "t.csv"], "a sweep"),
        (["--sweep-windows", "0.5", "--edge-profile", "fast"], "profile 'fast'"),
        (["--scenario", "missing.json"], "cannot read scenario file"),
        (["--scenario", str(SCENARIOS / "campus-phones.toml"), "--sweep-rates", "1,2"], "a sweep"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra, message):
    code = main(["simulate", "--duration", "5", "--out", str(tmp_path), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_malformed_trace_names_its_line(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("time,user,prompt_or_class,alpha,device\n1,u,cat,0,row5\n")
    assert main(["simulate", "--trace", str(trace), "--out", str(tmp_path)]) == 2
    assert "line 2: alpha must be > 0" in capsys.readouterr().err


@pytest.mark.slow
def test_a_scenario_file_states_the_same_run_as_the_options(tmp_path, capsys):
    """The shipped paper-default scenario at 50 steps is the built-in workload and site, draw for draw."""
    common = ["simulate", "--rate", "5", "--duration", "20", "--out", str(tmp_path), "--json", "--seed", "2"]
    assert main(common) == 0
    builtin = json.loads(capsys.readouterr().out)
    assert main([*common, "--scenario", str(SCENARIOS / "paper-default.json"), "--steps", "50"]) == 0
    assert json.loads(capsys.readouterr().out) == builtin


def test_a_scenario_sets_the_edge_devices_and_alpha():
    scenario = load_scenario(SCENARIOS / "campus-phones.toml")
    site = make_site(**scenario_site(scenario))
    assert (site.service.gpus, site.service.b_max, site.service.window_s) == (1, 8, 0.5)
    assert site.service.n_hat(50) == 20
    arrivals = generate(WorkloadConfig(users=400, **scenario_workload(scenario)), site, seed=1)
    assert set(arrivals.steps) == {50}
    devices = {(d.k, d.h) for d in scenario.devices}
    assert set(zip(arrivals.k, arrivals.h)) <= devices
    assert 4.0 < np.median(arrivals.alpha) < 6.0  # log-normal around 5 s, not the paper's interval


@pytest.mark.slow
def test_alpha_bounds_from_the_command_line(tmp_path, capsys):
    assert main(["simulate", "--alpha", "1,5", "--duration", "20", "--out", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] > 0
    arrivals = generate(WorkloadConfig(alpha=(1.0, 5.0), users=200, duration_s=20), make_site(), seed=0)
    assert 1.0 <= arrivals.alpha.min() and arrivals.alpha.max() <= 5.0 and np.unique(arrivals.alpha).size > 50
