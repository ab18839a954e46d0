"""G denoiser workers in the service: config checks; a service with workers=2 gives the
single-process latents, survives a SIGKILLed worker (no request lost, /v1/info and /metrics
report 1 alive) and plans the next window with G = 1; with the last worker gone it runs the
denoiser in its own process."""

import os
import signal
import time

import httpx
import numpy as np
import pytest

from edgediff.service.config import ServiceConfig, ServiceConfigError

SLOW = {"k": 0.5, "h": 0.01}  # a slow device: the edge grants it
TOLERANCE = 1e-4  # the executor's: a pool's smaller per-worker batches move float results ~1e-5


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"workers": 0}, "workers must be an integer >= 1"),
        ({"workers": -2}, "workers must be an integer >= 1"),
        ({"workers": 1.5}, "workers must be an integer >= 1"),
        ({"workers": True}, "workers must be a finite number"),
        ({"workers": "2"}, "workers must be a finite number"),
        ({"worker_threads": 0}, "worker_threads must be an integer >= 1"),
        ({"workers": 2, "gpus": 3}, "gpus (3) and workers (2) disagree"),
    ],
)
def test_service_config_refuses_bad_worker_counts(fields, message):
    with pytest.raises(ServiceConfigError) as err:
        ServiceConfig(**fields)
    assert message in str(err.value)


def test_service_config_workers_set_g():
    assert ServiceConfig().workers == 1 and ServiceConfig().gpus == 1  # the single-process default
    assert ServiceConfig(workers=2).gpus == 2
    assert ServiceConfig(workers=2, gpus=2, worker_threads=3).worker_threads == 3
    assert ServiceConfig(gpus=4).workers == 1  # G of the model only; one process runs the denoiser


@pytest.fixture(scope="module")
def edge_model():
    """The edge's own model: the engine routes its denoiser to the pool while it runs."""
    from edgediff.runtime.models import load_model

    return load_model("tiny")


def _submit(http, seed, steps):
    body = {"prompt": f"a lighthouse {seed}", "steps": steps, "seed": seed, "alpha": 1.0, "profile": SLOW}
    answer = http.post("/v1/requests", json=body)
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def _wait_terminal(http, ids, timeout=60):
    return {i: http.get(f"/v1/requests/{i}", params={"wait": timeout}).json() for i in ids}


@pytest.mark.slow
def test_two_workers_equal_one_and_a_killed_worker_costs_no_request(start_service, edge_model, monkeypatch):
    from edgediff.runtime.models import load_model
    from edgediff.runtime.payload import decode_latent
    from edgediff.runtime.split import run_edge, run_local
    from edgediff.service import scheduler

    planned = []  # the G of every instance the engine decided on
    decide = scheduler.decide_window

    def recording(*args, **kwargs):
        groups = decide(*args, **kwargs)
        planned.extend(g.instance.G for g in groups if g.instance is not None)
        return groups

    monkeypatch.setattr(scheduler, "decide_window", recording)
    service, engine = start_service(model=edge_model, workers=2, cache_gb=0, window_s=0.3)
    assert engine.pool.alive == 2 and edge_model.workers is engine.pool
    with httpx.Client(base_url=service.url, timeout=90) as http:
        info = http.get("/v1/info").json()
        assert info["workers"]["configured"] == 2 and info["workers"]["alive"] == 2 and info["gpus"] == 2
        metrics = http.get("/metrics").text
        assert "edgediff_workers_alive 2.0" in metrics and 'edgediff_worker_alive{worker="1"} 1.0' in metrics
        ids = [_submit(http, seed, steps=24) for seed in range(6)]
        deadline = time.monotonic() + 30
        while engine.batch_members == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert engine.batch_members > 0  # members in flight when the worker dies
        victim = engine.pool.pids()[1]
        os.kill(victim, signal.SIGKILL)
        statuses = _wait_terminal(http, ids)
        assert all(s["status"] == "done" for s in statuses.values()), statuses  # rows re-ran on the survivor
        assert planned and set(planned) == {2}
        info = http.get("/v1/info").json()
        assert info["workers"]["alive"] == 1 and info["gpus"] == 1
        assert [w["alive"] for w in info["workers"]["each"] if w["pid"] == victim] == [False]
        metrics = http.get("/metrics").text
        assert "edgediff_workers_alive 1.0" in metrics and 'edgediff_worker_alive{worker="1"} 0.0' in metrics
        assert 'edgediff_worker_rows{worker="0"} 0.0' not in metrics  # the survivor computed rows
        assert http.get("/v1/status").json()["workers"] == {"configured": 2, "alive": 1}
        # the next window is planned with G - 1
        later = _submit(http, 99, steps=8)
        assert _wait_terminal(http, [later])[later]["status"] == "done"
        assert planned[-1] == 1
        # the last worker gone (between steps): the denoiser falls back to the service's process
        os.kill(engine.pool.pids()[0], signal.SIGKILL)
        while engine.pool.alive:
            time.sleep(0.01)
        last = _submit(http, 98, steps=8)
        assert _wait_terminal(http, [last])[last]["status"] == "done"
        assert planned[-1] == 1 and edge_model.workers is None
        assert http.get("/v1/info").json()["workers"]["alive"] == 0
        payloads = {i: http.get(f"/v1/requests/{i}/latent").content for i in [*ids, later, last]}
    service.stop()
    assert edge_model.workers is None
    assert sum(engine.stats.terminal.values()) == engine.stats.accepted == len(ids) + 2
    # the pooled edge's latents are the single-process ones within the tolerance, and so are the images
    single = load_model("tiny")
    for key, payload in payloads.items():
        pooled = decode_latent(payload)
        reference = run_edge(single, pooled.request, pooled.split)
        assert float((pooled.latent - reference.latent).abs().max()) <= TOLERANCE, key
        images = [single.decode(run_local(single, s).latent)[0].astype(int) for s in (pooled, reference)]
        assert np.abs(images[0] - images[1]).max() <= 1  # one grey level at most
