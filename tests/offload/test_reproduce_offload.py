import contextlib
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest

from edgediff.offload.compare import compare_points
from edgediff.reproduce import REGISTRY, reproduce
from helpers import free_port, run_cli

PART_A = ("fig8a", "fig8b", "fig9", "fig10", "fig11a", "fig11b", "fig11c", "table2", "timeline")


def read_csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def assert_no_policy_beats_exact(rows, point=("users", "gpus")):
    exact = {tuple(r[k] for k in point): float(r["mean_objective"]) for r in rows if r["policy"] == "exact"}
    assert exact
    for r in rows:
        assert float(r["mean_objective"]) <= exact[tuple(r[k] for k in point)] + 1e-9, r


def test_every_paper_figure_is_registered():
    assert set(PART_A) <= set(REGISTRY)


@pytest.mark.slow
def test_fig11a_quick_end_to_end(tmp_path):
    paths = reproduce("fig11a", tmp_path, quick=True, workers=2)
    assert sorted(p.suffix for p in paths) == [".csv", ".md", ".png"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_csv(tmp_path / "fig11a.csv")
    assert {"users", "gpus", "policy", "cases", "mean_objective", "mean_score"} <= set(rows[0])
    assert {r["policy"] for r in rows} == {"dqn", "b1", "b2", "b3", "exact"}
    assert {int(r["users"]) for r in rows} == {4, 12, 20}
    assert_no_policy_beats_exact(rows)
    for r in rows:
        assert float(r["mean_objective_per_user"]) == pytest.approx(float(r["mean_objective"]) / int(r["users"]))
    assert "exact" in (tmp_path / "fig11a.md").read_text()


@pytest.mark.slow
def test_sweep_results_do_not_depend_on_workers():
    points = [(4, 8), (12, 2)]
    serial = compare_points(points, 7, ["b1", "exact"], workers=1, chunk=3)
    parallel = compare_points(points, 7, ["b1", "exact"], workers=2, chunk=3)
    assert [(r.users, r.gpus, r.policy, r.mean_objective) for r in serial] == [
        (r.users, r.gpus, r.policy, r.mean_objective) for r in parallel
    ]


@pytest.mark.slow
def test_fig8_trends_follow_the_paper(tmp_path):
    reproduce("fig8a", tmp_path)
    curves = defaultdict(list)
    for r in read_csv(tmp_path / "fig8a.csv"):
        curves[int(r["local_row"]), int(r["batch_size"])].append((float(r["alpha"]), int(r["offloaded_steps"])))
    for points in curves.values():
        steps = [s for _, s in sorted(points)]
        assert all(a >= b for a, b in zip(steps, steps[1:]))  # more emphasis on quality, fewer offloaded steps
        assert steps[0] > steps[-1]
    for row in (3, 6, 10):  # a larger edge batch never makes offloading more attractive
        for small, large in zip([1, 5, 10], [5, 10, 20]):
            assert all(s >= t for (_, s), (_, t) in zip(sorted(curves[row, small]), sorted(curves[row, large])))


@pytest.mark.slow
def test_timeline_figure_quick(tmp_path):
    reproduce("timeline", tmp_path, quick=True, workers=1)
    for r in read_csv(tmp_path / "timeline.csv"):
        paper, exact, best = (
            float(r[k])
            for k in ("exact_paper_model_per_user", "exact_timeline_model_per_user", "timeline_optimum_per_user")
        )
        assert paper <= exact + 1e-12 <= best + 2e-12  # the timeline is never slower; its optimum never worse
        assert 0.0 <= float(r["exact_score_under_timeline"]) <= 1.0 + 1e-9
    assert "largest |timeline - brute force| = 0" in (tmp_path / "timeline.md").read_text()


@pytest.mark.slow
def test_table2_quick_measures_every_policy(tmp_path):
    reproduce("table2", tmp_path, quick=True)
    rows = read_csv(tmp_path / "table2.csv")
    assert {r["policy"] for r in rows} == {"exact", "timeline", "dqn", "ga", "milp"}
    assert all(float(r["median_decision_time_s"]) > 0 for r in rows)
    assert max(int(r["users"]) for r in rows if r["policy"] == "dqn") <= 20


@contextlib.contextmanager
def local_ray_cluster():
    """A throw-away loopback Ray cluster; yields its address. ``ray start --block`` in its own
    process group, killed as a group at the end: ``ray stop`` would stop every Ray cluster on
    the machine, the user's own included. Its files live in a temporary directory of their
    own, so it leaves no ``ray_current_cluster`` behind for a later ``ray.init()`` to join."""
    ray_cli = shutil.which("ray")
    assert ray_cli, "the ray package is installed but its command is not on PATH"
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    temp_dir = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths must fit 107 bytes
    args = ["--head", "--block", f"--port={address.split(':')[1]}", "--num-cpus=2", "--include-dashboard=false"]
    args += [f"--temp-dir={temp_dir}"]
    head = subprocess.Popen(
        [ray_cli, "start", *args, "--disable-usage-stats"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        probe = f"import ray; ray.init(address={address!r}, log_to_driver=False); ray.shutdown()"
        deadline = time.monotonic() + 120
        while subprocess.run([sys.executable, "-c", probe], capture_output=True, env=env).returncode:
            assert head.poll() is None and time.monotonic() < deadline, "the local Ray cluster did not start"
            time.sleep(1)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(120)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.ray
def test_reproduce_on_a_local_ray_cluster(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'edgediff[ray]')")
    with local_ray_cluster() as address:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgediff",
                "reproduce",
                "fig11b",
                "--quick",
                "--out",
                str(tmp_path / "ray"),
                "--ray",
                address,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert run.returncode == 0, run.stderr[-2000:]
    reproduce("fig11b", tmp_path / "local", quick=True, workers=1)
    on_ray, local = read_csv(tmp_path / "ray" / "fig11b.csv"), read_csv(tmp_path / "local" / "fig11b.csv")
    key = ("users", "gpus", "policy", "mean_objective")
    assert [tuple(r[k] for k in key) for r in on_ray] == [tuple(r[k] for k in key) for r in local]
    assert_no_policy_beats_exact(on_ray)


@pytest.mark.slow
def test_reproduce_cli_errors(tmp_path):
    def run(*args):
        return run_cli("reproduce", *args)

    for args in (["fig99", "--out", str(tmp_path)], ["fig8a", "--out", str(tmp_path), "--workers", "0"]):
        result = run(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("edgediff reproduce: error:")
    result = run("fig11a", "--quick", "--out", str(tmp_path), "--ray", f"127.0.0.1:{free_port()}")
    assert result.returncode == 2 and "cannot connect to the Ray cluster" in result.stderr


@pytest.mark.slow
def test_your_policy_appears_in_the_paper_s_figure_beside_the_optimum_on_your_scenario(tmp_path):
    from edgediff.core.scenario import scenario_from_dict
    from edgediff.reproduce import UnknownFigure

    mine = f"{Path(__file__).parents[2] / 'examples' / 'policies' / 'slowest_first.py'}:solve"
    scenario = scenario_from_dict({"name": "campus", "G": 4, "B_max": 3, "users": [4, 6]})
    options = {"policies": [mine, "b1"], "scenario": scenario, "workers": 1}
    reproduce("fig11a", tmp_path, quick=True, seed=2, options=options)
    rows = list(csv.DictReader(open(tmp_path / "fig11a.csv")))
    assert {(r["users"], r["gpus"], r["policy"]) for r in rows} == {
        (u, "4", p) for u in ("4", "6") for p in (mine, "b1", "exact")
    }
    for r in rows:  # exact is the optimum of the scenario's instances (B_max 3 binds at 6 users)
        assert float(r["mean_score"]) <= 1.0 + 1e-9
    assert "drawn from scenario campus" in (tmp_path / "fig11a.md").read_text()
    with pytest.raises(
        UnknownFigure,
        match="policies apply to fig11a, fig11b, fig11c, cache-fig8, cache-fig9, cache-fig10; fig8a takes neither",
    ):
        reproduce("fig8a", tmp_path, options={"policies": ["b1"]})
