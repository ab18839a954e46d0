"""bench/bench_peers.py's pieces on a tiny load: the peers really run diffusers' pipeline (one
request per call, or same-step-count batches up to B_max), the trace replay answers every
request once, and the summary counts what was not answered."""

import argparse
import asyncio
import io
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
bench_peers = pytest.importorskip("bench_peers")

ARGS = argparse.Namespace(window=0.2, bmax=4)
EDGE = (0.01, 0.004)  # the edge profile of the service fixture (conftest)


@pytest.fixture
def spied_pipeline(monkeypatch):
    """Every ``StableDiffusionPipeline.__call__``: its prompt (a string, or a batch's list) and step count."""
    from diffusers import StableDiffusionPipeline

    calls = []
    original = StableDiffusionPipeline.__call__

    def spy(self, prompt, *args, **kwargs):
        calls.append((prompt, kwargs["num_inference_steps"]))
        return original(self, prompt, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", spy)
    return calls


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from edgediff.runtime.models import load_model

    path = tmp_path_factory.mktemp("tiny-pipeline")
    load_model("tiny").backend.save(path)
    return str(path)


def image_size(png: bytes) -> tuple[int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(png)).size


@pytest.mark.slow
def test_plain_server_calls_the_diffusers_pipeline_once_per_request(model_dir, spied_pipeline):
    from fastapi.testclient import TestClient

    with TestClient(bench_peers.peer_app(model_dir, "plain", 0.2, 4)) as client:
        answers = [
            client.post("/generate", json={"prompt": f"a handwritten digit {i}", "steps": 2, "seed": i})
            for i in range(2)
        ]
        stats = client.get("/stats").json()
    assert [a.status_code for a in answers] == [200, 200]
    assert [image_size(a.content) for a in answers] == [(16, 16)] * 2
    assert spied_pipeline == [("a handwritten digit 0", 2), ("a handwritten digit 1", 2)]
    assert stats["images"] == stats["calls"] == 2 and stats["busy_s"] > 0


@pytest.mark.slow
def test_static_server_batches_same_step_counts_up_to_b_max(model_dir, spied_pipeline):
    from fastapi.testclient import TestClient

    steps = [2, 3, 2, 2, 2]
    answers = [None] * len(steps)
    with TestClient(bench_peers.peer_app(model_dir, "static", 0.3, 2)) as client:

        def send(i):
            answers[i] = client.post("/generate", json={"prompt": f"digit {i}", "steps": steps[i], "seed": i})

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(steps))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        stats = client.get("/stats").json()
    assert all(a is not None and a.status_code == 200 for a in answers)
    assert all(isinstance(prompts, list) and 1 <= len(prompts) <= 2 for prompts, _ in spied_pipeline)
    served = sorted((p, n) for prompts, n in spied_pipeline for p in prompts)
    assert served == sorted((f"digit {i}", n) for i, n in enumerate(steps))  # each once, at its own step count
    assert stats["images"] == len(steps) and stats["calls"] == len(spied_pipeline) >= 3


@pytest.mark.slow
def test_replay_answers_every_request_of_the_trace_once(start_service):
    edge = bench_peers.Edge(*EDGE, intermediate_bits=8_000, decode_s=0.001, pai=(0.0413, 71.44))
    arrivals = bench_peers.make_trace("bursty", 6.0, 2.0, (4, 6), edge, ARGS, seed=3)
    assert np.all(np.diff(arrivals.time) >= 0) and set(arrivals.steps.tolist()) <= {4, 6}
    service, engine = start_service(window_s=0.2, b_max=4, cache_gb=0, policy="exact")
    run = asyncio.run(bench_peers.replay(service.url, "edgediff", arrivals, cut_s=30.0))
    assert not run.errors and np.isfinite(run.answered).all()
    assert len(engine.jobs()) == len(arrivals)  # each request submitted once
    row = bench_peers.summarize(run, arrivals, edge)
    assert row["answered"] == row["requests"] == len(arrivals) and not row["breaks"]
    granted = run.split < arrivals.steps
    assert (run.answer_bytes[granted] > 0).all() and (run.answer_bytes[~granted] == 0).all()
    assert sum(run.denied_reasons.values()) == (~granted).sum()  # every denial's reason, counted
    # the service as shipped: its windows decide with L(b) times the steps' measured pace
    *_, scale = bench_peers.edge_counters(service.url, "edgediff")
    assert scale == engine.scheduler.step_scale and engine.config.profile_from_steps


@pytest.mark.slow  # the twin's workload generator's imports (SciPy) on first use
def test_summary_counts_unanswered_requests_and_the_device_schedule():
    edge = bench_peers.Edge(0.01, 0.0, intermediate_bits=1000, decode_s=0.002, pai=(0.0413, 71.44))
    arrivals = bench_peers.make_trace("poisson", 4.0, 3.0, (10,), edge, ARGS, seed=1)
    n = len(arrivals)
    device = bench_peers.summarize(bench_peers.device_run(arrivals), arrivals, edge)
    expected = 10 * (arrivals.k + arrivals.h) + edge.decode_s * (arrivals.k + arrivals.h) / edge.l1
    assert device["latency_mean_s"] == pytest.approx(expected.mean()) and not device["breaks"]
    answered = arrivals.time + 0.05
    answered[-1] = np.nan  # the last request never answered before the cut
    run = bench_peers.Run("plain", arrivals.time.copy(), answered, np.zeros(n, int), np.full(n, 100.0), np.ones(n), 0.1)
    run.cut_s = float(arrivals.time.max()) + 5.0
    row = bench_peers.summarize(run, arrivals, edge)
    assert row["answered"] == n - 1 and row["unanswered"] == 1 and row["breaks"]
    assert row["latency_p95_s"] > 0.05  # the unanswered one counted up to the cut
