import json

import pytest

from edgediff.cli import main
from helpers import run_cli

KEYS = {
    "policy",
    "mean_response_time_s",
    "p95_response_time_s",
    "hit_rate",
    "time_saved_per_request_s",
    "mean_queue",
    "system_cost",
    "decision_time_ms",
    "mean_backlog_s",
    "p95_backlog_s",
    "final_backlog_s",
    "unstable",
    "cache_full_slot",
}


def test_cache_sim_json(capsys):
    args = "cache-sim --policy lru --slots 120 --users 6 --capacity-gb 0.01 --reusable-steps 5 --V 1000 --seed 3"
    assert main([*args.split(), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == KEYS and out["policy"] == "lru"
    assert out["time_saved_per_request_s"] > 0
    assert main([*args.split(), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in again.items() if k != "decision_time_ms"} == {
        k: v for k, v in out.items() if k != "decision_time_ms"
    }


def test_cache_sim_bandwidth_unit(capsys):
    """The 5G link (MHz) is the default; kHz (revision 2's reading) makes every transfer 1000x slower."""
    args = ["cache-sim", "--policy", "oo", "--slots", "60", "--seed", "2", "--json"]
    out = {}
    for unit in (None, "MHz", "kHz"):
        assert main(args + ([] if unit is None else ["--bandwidth-unit", unit])) == 0
        out[unit] = json.loads(capsys.readouterr().out)["mean_response_time_s"]
    assert out[None] == out["MHz"]
    assert out["kHz"] > out["MHz"] + 0.5


def test_cache_sim_text(capsys):
    assert main(["cache-sim", "--policy", "ncldc", "--slots", "50"]) == 0
    text = capsys.readouterr().out
    assert "mean_response_time_s" in text and "hit_rate" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--policy", "fifo"], "unknown policy 'fifo'"),
        (["--policy", "lru", "--reusable-steps", "21"], "--reusable-steps must be in [1, steps=20]"),
        (["--policy", "lru", "--users", "0"], "must be >= 1"),
        (["--policy", "lru", "--capacity-gb", "-1"], "must be >= 0.0"),
        (["--policy", "lru", "--capacity-gb", "0.0001"], "--capacity-gb must be 0 (no cache) or hold at least one"),
        (["--policy", "lru", "--V", "nan"], "must be >= 0.0"),
        (["--policy", "lru", "--slots", "ten"], "expected an integer"),
        (["--policy", "lru", "--bandwidth-unit", "GHz"], "argument --bandwidth-unit: invalid choice: 'GHz'"),
        (["--policy"], "argument --policy: expected one argument"),  # --policy itself defaults to lcbfu
    ],
)
@pytest.mark.slow
def test_cache_sim_bad_input_exit_2(args, message):
    proc = run_cli("cache-sim", *args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("edgediff cache-sim: error:")


def test_reproduce_unknown_figure_exit_2(tmp_path):
    proc = run_cli("reproduce", "cache-fig99", "--out", str(tmp_path))
    assert proc.returncode == 2 and "unknown figure 'cache-fig99'" in proc.stderr


@pytest.mark.slow
def test_reproduce_quick_figure_end_to_end(tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["reproduce", "cache-fig10", "--out", str(out), "--quick", "--seed", "1"]) == 0
    printed = capsys.readouterr().out.split()
    names = sorted(p.name for p in out.iterdir())
    assert names == ["cache-fig10.csv", "cache-fig10.md", "cache-fig10.png"] and len(printed) == 3
    png = (out / "cache-fig10.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    rows = (out / "cache-fig10.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 9  # 3 capacities x (7 policies + 2 reference rows)
    assert rows[0].startswith("capacity_gb,policy,mean_response_time_s")
    summary = (out / "cache-fig10.md").read_text()
    assert "0 GB (oo)" in summary and "all-hit floor" in summary and "(best classic)" in summary
