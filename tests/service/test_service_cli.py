"""The service commands: generate --server, serve's input errors, the grown demo."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from edgediff.cli import main
from edgediff.runtime.request import GenerationRequest
from edgediff.runtime.split import generate


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "edgediff", *args], capture_output=True, text=True, timeout=120)


def test_generate_with_server_writes_the_split_image(start_service, tiny, tmp_path, capsys):
    service, engine = start_service(cache_gb=0)
    out = tmp_path / "remote.png"
    args = ["generate", "--prompt", "a lighthouse", "--steps", "10", "--seed", "4", "--server", service.url]
    assert main([*args, "--preset", "row9", "--alpha", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "granted" in text and "predicted" in text and "measured" in text
    job = engine.jobs()[0]
    assert job.snapshot.status == "done"
    reference = generate(GenerationRequest("a lighthouse", steps=10, seed=4), tiny, split=job.snapshot.split)
    assert np.array_equal(np.asarray(Image.open(out)), reference.image)
    # no profile given: the device measures its own
    assert main([*args, "--out", str(tmp_path / "measured.png")]) == 0
    assert engine.jobs()[1].k > 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--split", "3"], "drop --split"),
        (["--preset", "row3", "--profile", "0.1,0.01"], "not both"),
        (["--preset", "gpu9000"], "unknown --preset"),
    ],
)
def test_generate_server_option_errors(tmp_path, capsys, extra, message):
    args = ["generate", "--prompt", "x", "--server", "http://127.0.0.1:9", "--out", str(tmp_path / "a.png")]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_generate_unreachable_server_and_profile_without_server(tmp_path, capsys):
    out = str(tmp_path / "a.png")
    assert (
        main(
            [
                "generate",
                "--prompt",
                "x",
                "--steps",
                "2",
                "--server",
                "http://127.0.0.1:9",
                "--preset",
                "row3",
                "--out",
                out,
            ]
        )
        == 2
    )
    assert "cannot reach the edge service" in capsys.readouterr().err
    assert main(["generate", "--prompt", "x", "--preset", "row3", "--out", out]) == 2
    assert "need --server" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--policy", "nope"], "unknown policy"),
        (["--policy", "milp", "--policy-option", "seeds=1"], "takes no option 'seeds'"),
        (["--model", "/nonexistent/model"], "does not exist"),
        (["--window", "-1"], "--window"),
        (["--edge-profile", "0.1"], "--edge-profile"),
        (["--cache-gb", "nan"], "--cache-gb"),
    ],
)
def test_serve_bad_options_exit_2(args, message):
    result = run_cli("serve", "--port", "0", *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr


def test_demo_runs_the_service_window_and_writes_the_grid(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--users", "4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "The optimal decision (exact)" in text  # Part A part still there
    assert "edgediff service demo" in text and "predicted_s" in text and "measured_s" in text
    rows = [line for line in text.splitlines() if line.strip().startswith("u") and "x " in line]
    assert len(rows) == 8
    assert any("granted" in r for r in rows)
    grid = Image.open(out)
    assert grid.size == (4 * 128, 2 * 128)


def test_service_config_policy_options():
    from edgediff.service.config import ServiceConfig, ServiceConfigError

    assert ServiceConfig(policy="milp", policy_options={"time_limit": 2.0}).policy_options == {"time_limit": 2.0}
    assert ServiceConfig().policy_options == {}
    with pytest.raises(ServiceConfigError, match="takes no option 'population'; it takes: time_limit"):
        ServiceConfig(policy="milp", policy_options={"population": 5})
