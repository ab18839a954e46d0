"""The service commands: generate --server, serve's input errors, the grown demo."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgediff.cli import main
from edgediff.runtime.request import GenerationRequest
from edgediff.runtime.split import generate
from helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_generate_with_server_writes_the_split_image(start_service, tiny, tmp_path, capsys):
    service, engine = start_service(cache_gb=0)
    out = tmp_path / "remote.png"
    args = ["generate", "--prompt", "a lighthouse", "--steps", "10", "--seed", "4", "--server", service.url]
    assert main([*args, "--preset", "row9", "--alpha", "3", "--native-size", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "granted" in text and "predicted" in text and "measured" in text
    # row9 declares 0.296 s per step; the tiny model on this CPU takes a few ms: said, with the fix
    assert "device step: declared 0.296 s, measured" in text and "does not fit this device" in text
    job = engine.jobs()[0]
    assert job.snapshot.status == "done"
    reference = generate(GenerationRequest("a lighthouse", steps=10, seed=4), tiny, split=job.snapshot.split)
    assert np.array_equal(np.asarray(Image.open(out)), reference.image)
    # no profile given: the device measures its own
    assert main([*args, "--out", str(tmp_path / "measured.png")]) == 0
    assert engine.jobs()[1].k > 0
    # a calibrate profile file stands for k,h
    profile = tmp_path / "device.json"
    profile.write_text('{"k": 0.02, "h": 0.005, "r2": 0.99, "model": "tiny", "threads": 1}')
    assert main([*args, "--profile", str(profile), "--out", str(tmp_path / "file.png")]) == 0
    assert (engine.jobs()[2].k, engine.jobs()[2].h) == (0.02, 0.005)


@pytest.mark.slow
def test_generate_with_server_checks_the_models_match(start_service, tiny, tmp_path, capsys):
    """Issue 32.1: the edge serves another latent space (tiny-random: another VAE scaling)."""
    import httpx

    from edgediff.runtime.models import load_model

    edge_model = load_model("tiny-random")
    service, engine = start_service(model=edge_model, cache_gb=0)
    info = httpx.get(f"{service.url}/v1/info").json()
    assert info["latent_space"] == edge_model.latent_space and info["latent_space"]["model"] == "tiny-random"
    args = ["generate", "--prompt", "a boat", "--steps", "4", "--server", service.url, "--preset", "row9"]
    assert main([*args, "--model", "tiny", "--out", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model mismatch: the edge's model 'tiny-random'" in err[0]
    assert "the device's model 'tiny'" in err[0] and "vae_scaling_factor" in err[0]
    assert engine.jobs() == [] and not (tmp_path / "a.png").exists()  # refused before submitting
    # without --model the device loads the edge's model (a built-in one here) and finishes with it
    assert main([*args, "--alpha", "3", "--out", str(tmp_path / "b.png")]) == 0
    assert "local on tiny-random" in capsys.readouterr().out


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
        (["--cache-policy", "drc"], "drc decides with Part B's learned actor"),
        (["--cache-policy", "fifo"], "unknown cache policy 'fifo'"),
        (["--pai", "/nonexistent/pai.json"], "cannot read PAI file"),
        (["--engine-process", "--ray", "auto"], "--engine-process does not apply with --ray"),
    ],
)
@pytest.mark.slow
def test_serve_bad_options_exit_2(args, message):
    result = run_cli("serve", "--port", "0", *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr


@pytest.mark.slow
def test_demo_runs_the_service_window_and_writes_the_grid(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--users", "4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "The optimal decision (exact)" in text  # Part A part still there
    assert "edgediff service demo" in text and "predicted_s" in text and "measured_s" in text
    rows = [line for line in text.splitlines() if line.strip().startswith("u") and "x " in line]
    assert len(rows) == 8
    assert any("granted" in r for r in rows)
    grid = np.asarray(Image.open(out).convert("L"))
    assert grid.shape[1] > 4 * 128 and grid.shape[0] > 2 * 128  # 128-px tiles, 2 x 4, with captions
    caption = grid[128 + 8 : grid.shape[0] // 2]  # below the first row's tiles
    assert (caption < 100).any()  # dark caption text on the white margin


def test_service_config_policy_options():
    from edgediff.service.config import ServiceConfig, ServiceConfigError

    assert ServiceConfig(policy="milp", policy_options={"time_limit": 2.0}).policy_options == {"time_limit": 2.0}
    assert ServiceConfig().policy_options == {}
    with pytest.raises(ServiceConfigError, match="takes no option 'population'; it takes: time_limit"):
        ServiceConfig(policy="milp", policy_options={"population": 5})


def test_serve_refuses_bad_journal_port_and_keys_before_loading_the_model(tmp_path, capsys):
    import socket

    missing_model = ["serve", "--model", "/nonexistent/model"]  # never reached: each error comes first
    bad_keys = tmp_path / "keys.txt"
    bad_keys.write_text("alice short\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        cases = [
            (["--port", "0", "--journal", str(tmp_path)], "is a directory"),
            (["--port", "0", "--journal", str(tmp_path / "no" / "j.jsonl")], "does not exist"),
            (["--port", port], f"cannot listen on 127.0.0.1:{port}"),
            (["--port", "0", "--api-keys", str(bad_keys)], "at least 16 characters"),
            (["--port", "0", "--api-keys", str(tmp_path / "none.txt")], "cannot read API keys"),
            (["--port", "0", "--share-cache"], "--share-cache needs --api-keys"),
        ]
        for args, message in cases:
            assert main([*missing_model, *args]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and message in err[0], (args, err)


@pytest.mark.slow
def test_generate_timeout_has_its_own_exit_code(tmp_path):
    """Issue 19.1: an edge that never decides is a timeout (exit 4, one line), not bad input (2)."""
    import http.server
    import json
    import threading

    class NeverDecides(http.server.BaseHTTPRequestHandler):
        def _json(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._json(202, {"id": "r1", "status": "queued"})

        def do_GET(self):
            self._json(200, {"id": "r1", "status": "queued"})

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NeverDecides)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        args = ["generate", "--server", url, "--prompt", "x", "--steps", "4", "--profile", "0.1,0", "--model", "tiny"]
        args += ["--timeout", "1", "--out", str(tmp_path / "a.png")]
        result = run_cli(*args)
    finally:
        server.shutdown()
    assert result.returncode == 4, result.stderr
    assert result.stderr.strip().splitlines() == ["edgediff generate: error: no decision for request r1 within 1 s"]
    assert not (tmp_path / "a.png").exists()


@pytest.mark.slow
def test_serve_prints_its_url_and_when_ready_the_edge_profile():
    """Issue 19.10: the operator sees where to look and the profile the edge decides with."""
    import re
    import time

    args = ["serve", "--port", "0", "--cache-gb", "0", "--edge-profile", "0.01,0.004"]
    proc = subprocess.Popen([sys.executable, "-m", "edgediff", *args], stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line.strip())
            if line.startswith("edge ready"):
                break
    finally:
        proc.kill()  # shutdown is tested elsewhere
        proc.wait(timeout=60)
    ready = r"edgediff serve: http://127\.0\.0\.1:\d+ once ready: / \(status page\), /docs \(API\), /v1/info"
    assert re.match(ready, lines[0]), lines
    assert any(line.startswith("edge ready: model tiny, L(b) = 0.01 b + 0.004 s, policy exact") for line in lines)


def test_serve_takes_measure_pai_s_curve_and_defaults_to_the_tiny_models_measured_one(tmp_path):
    import json

    from edgediff.core.pai import PaiCurve, PaiFileError, load_pai_fit
    from edgediff.service.config import service_pai_curve as pai_curve

    measured = json.loads((ROOT / "docs" / "results-pai" / "pai.json").read_text())
    assert pai_curve(None, "tiny") == PaiCurve(**measured["pai_at_N200"])  # the packaged copy is that run's fit
    assert pai_curve(None, "tiny-bold") == pai_curve(None, "tiny")
    assert pai_curve(None, "arch:sd15") == pai_curve(None, "tiny-random") == PaiCurve()  # the paper's fit otherwise
    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps({"a": 0.2, "b": 10.0, "N": 50}))  # fitted on 50-step runs
    assert load_pai_fit(fit) == PaiCurve(0.2, 10.0).for_steps(200, over=50)
    assert pai_curve(fit, "tiny") == load_pai_fit(fit)
    fit.write_text(json.dumps({"a": -1, "b": 10.0}))
    with pytest.raises(PaiFileError, match="a > 0"):
        load_pai_fit(fit)
