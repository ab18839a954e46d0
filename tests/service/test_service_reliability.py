"""Bad input, a full queue, disconnecting clients and shutdown: the service stays healthy and
every accepted request ends in a recorded terminal state."""

import json
import signal
import socket
import threading
import time

import httpx
import pytest

from edgediff.service.client import EdgeClient

GOOD = {"prompt": "a cat", "steps": 4, "alpha": 2.0, "profile": {"k": 0.2, "h": 0.01}}


@pytest.mark.parametrize(
    "body, field",
    [
        ({**GOOD, "alpha": -1}, "body.alpha"),
        ({**GOOD, "alpha": 0}, "body.alpha"),
        ({**GOOD, "steps": 0}, "body.steps"),
        ({**GOOD, "steps": 2.5}, "body.steps"),
        ({**GOOD, "seed": -3}, "body.seed"),
        ({**GOOD, "profile": {"k": -0.1, "h": 0.2}}, "body.profile.k"),
        ({**GOOD, "profile": {"k": 0.1, "h": -0.2}}, "body.profile"),
        ({**GOOD, "guidance_scale": 1e9}, "body.guidance_scale"),
        ({**GOOD, "colour": "red"}, "body.colour"),
        ({**GOOD, "preset": "row3"}, "exactly one of profile"),
        ({**GOOD, "profile": None, "preset": "gpu9000"}, "body.preset"),
        ({k: v for k, v in GOOD.items() if k != "prompt"}, "body.prompt"),
        ({**GOOD, "prompt": "x" * 1001}, "body.prompt"),
        ({**GOOD, "prompt": ""}, "body.prompt"),
        # strict types: no strings or booleans for numbers, no 20.0 for an integer
        ({**GOOD, "steps": "20"}, "body.steps"),
        ({**GOOD, "steps": True}, "body.steps"),
        ({**GOOD, "steps": 20.0}, "body.steps"),
        ({**GOOD, "alpha": "2.5"}, "body.alpha"),
        ({**GOOD, "alpha": True}, "body.alpha"),
        ({**GOOD, "profile": {"k": "0.2", "h": 0.01}}, "body.profile.k"),
        # valid JSON, but more steps than the model's scheduler has training timesteps for
        ({**GOOD, "steps": 1000}, "body.steps"),
    ],
)
@pytest.mark.slow
def test_malformed_bodies_get_422_naming_the_field(start_service, body, field):
    service, engine = start_service(cache_gb=0)
    response = httpx.post(f"{service.url}/v1/requests", json=body)
    assert response.status_code == 422
    assert field in response.json()["error"]
    assert httpx.get(f"{service.url}/healthz").json()["status"] == "ok"
    assert engine.stats.accepted == 0


@pytest.mark.slow
def test_non_finite_invalid_json_and_oversized_bodies(start_service):
    service, engine = start_service(cache_gb=0, max_body_bytes=4096)
    url = f"{service.url}/v1/requests"
    headers = {"content-type": "application/json"}
    nan = json.dumps({**GOOD, "alpha": float("nan")})  # Python writes the NaN literal
    assert "NaN" in nan
    response = httpx.post(url, content=nan, headers=headers)
    assert response.status_code == 422 and "alpha" in response.json()["error"]
    response = httpx.post(url, content=b'{"prompt": ', headers=headers)
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    response = httpx.post(url, content=b"\xff\xfe{}", headers=headers)
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    duplicate = b'{"prompt": "a", "steps": 4, "steps": 6, "alpha": 2.0, "profile": {"k": 0.2, "h": 0.01}}'
    response = httpx.post(url, content=duplicate, headers=headers)
    assert response.status_code == 422 and response.json()["error"] == "body.steps: duplicate key"
    nested = b'{"prompt": "a", "alpha": 2.0, "profile": {"k": 0.2, "h": 0.01, "k": 0.3}}'
    response = httpx.post(url, content=nested, headers=headers)
    assert response.status_code == 422 and response.json()["error"] == "body.profile.k: duplicate key"
    response = httpx.post(url, content=json.dumps({**GOOD, "negative_prompt": "y" * 5000}), headers=headers)
    assert response.status_code == 413
    response = httpx.get(f"{service.url}/v1/requests/nope")
    assert response.status_code == 404 and "nope" in response.json()["error"]
    response = httpx.get(f"{service.url}/v1/requests/nope", params={"wait": -1})
    assert response.status_code == 422 and "wait" in response.json()["error"]
    assert httpx.get(f"{service.url}/healthz").status_code == 200
    head = httpx.head(f"{service.url}/healthz")
    assert head.status_code == 200 and head.content == b""
    assert engine.stats.accepted == 0
    # still serving
    with EdgeClient(service.url) as client:
        job = client.submit("ok", alpha=1.0, profile=(0.2, 0.0), steps=3)["id"]
        assert client.status(job, wait=30)["status"] == "done"


@pytest.mark.slow
def test_full_queue_answers_503_with_retry_after_and_drains(start_service):
    service, engine = start_service(cache_gb=0, queue_limit=2, window_s=30.0)
    url = f"{service.url}/v1/requests"
    accepted = [httpx.post(url, json={**GOOD, "seed": i}) for i in range(2)]
    assert [r.status_code for r in accepted] == [202, 202]
    full = httpx.post(url, json=GOOD)
    assert full.status_code == 503 and int(full.headers["Retry-After"]) >= 1
    assert "full" in full.json()["error"]
    assert 'edgediff_rejected_requests_total{reason="queue_full"} 1.0' in httpx.get(f"{service.url}/metrics").text
    service.stop()  # graceful: the 30 s window is cut short, the two queued requests are decided and run
    jobs = engine.jobs()
    assert len(jobs) == 2 and all(j.snapshot.status == "done" for j in jobs)


@pytest.mark.slow
def test_disconnecting_clients_do_not_break_the_window(start_service):
    # a 2 s window: both submissions land in one window even on a loaded machine
    service, engine = start_service(cache_gb=0, window_s=2.0)
    # 1. a client that sends half a body and hangs up
    with socket.create_connection(("127.0.0.1", service.port)) as sock:
        sock.sendall(
            b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 500\r\n\r\n{"prompt": '
        )
    # 2. a client that submits, then gives up while long-polling
    with EdgeClient(service.url) as client:
        gone = client.submit("abandoned", alpha=2.0, profile=(0.2, 0.01), steps=6)["id"]
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{service.url}/v1/requests/{gone}", params={"wait": 10}, timeout=0.1)
    # 3. a client in the same window that stays
    with EdgeClient(service.url) as client:
        stays = client.submit("stays", alpha=2.0, profile=(0.2, 0.01), steps=6)["id"]
        assert client.status(stays, wait=30)["status"] == "done"
        assert client.status(gone, wait=30)["status"] == "done"
        assert client.status(gone)["window"] == client.status(stays)["window"]
    assert httpx.get(f"{service.url}/healthz").status_code == 200
    assert engine.stats.accepted == 2


@pytest.mark.slow
def test_stop_drains_every_request_to_a_terminal_state(start_service, tmp_path):
    journal = tmp_path / "journal.jsonl"
    service, engine = start_service(cache_gb=0, window_s=0.3, journal=journal)
    url = f"{service.url}/v1/requests"
    ids = []
    for i in range(6):  # two windows' worth: some running, some queued when the stop comes
        profile = {"k": 0.0001, "h": 0.0001} if i % 3 == 0 else {"k": 0.2, "h": 0.01}
        ids.append(httpx.post(url, json={**GOOD, "steps": 15, "seed": i, "profile": profile}).json()["id"])
        time.sleep(0.1)
    service.stop()
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [r["id"] for r in records if r["status"] == "queued"] == ids  # written ahead, in order
    records = [r for r in records if r["status"] != "queued"]
    assert sorted(r["id"] for r in records) == sorted(ids)  # each exactly once
    assert all(r["status"] in ("done", "denied") for r in records)
    assert {r["status"] for r in records} == {"done", "denied"}
    assert engine.stats.terminal["done"] + engine.stats.terminal["denied"] == 6


@pytest.mark.parametrize("apart", [["--no-engine-process"], []], ids=["one-process", "engine-process"])
@pytest.mark.slow
def test_sigterm_drains_then_stops(serve_subprocess, tmp_path, apart):
    journal = tmp_path / "journal.jsonl"
    options = ["--window", "5", "--cache-gb", "0", "--edge-profile", "0.01,0.004", "--journal", str(journal)]
    process, url = serve_subprocess(*options, *apart)
    try:
        ids = [httpx.post(f"{url}/v1/requests", json={**GOOD, "seed": i, "steps": 10}).json()["id"] for i in range(3)]
        process.send_signal(signal.SIGTERM)  # long before the 5 s window ends
        # drain first: the listener still answers, new requests get 503, every result is served
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/healthz").status_code != 503:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        late = httpx.post(f"{url}/v1/requests", json=GOOD)
        assert late.status_code == 503 and int(late.headers["Retry-After"]) >= 1
        with EdgeClient(url) as client:
            for job in ids:
                payload, status = client.fetch_latent(job, timeout=60)
                assert payload is not None and status is None
        output, _ = process.communicate(timeout=60)  # all collected: it closes without lingering
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # uvicorn re-raises the signal after its graceful shutdown: the conventional "ended by SIGTERM" status
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    records = [r for r in records if r["status"] != "queued"]
    assert sorted(r["id"] for r in records) == sorted(ids)
    assert all(r["status"] == "done" for r in records)


@pytest.mark.slow
def test_shutdown_drains_with_the_listener_up_then_closes(start_service):
    service, engine = start_service(cache_gb=0, window_s=30.0, linger_s=60.0)
    with EdgeClient(service.url) as client:
        granted = client.submit("granted", alpha=2.0, profile=(0.5, 0.01), steps=12, seed=1)["id"]
        denied = client.submit("denied", alpha=1.0, profile=(0.0001, 0.0001), steps=12, seed=2)["id"]
        stopper = threading.Thread(target=service.stop)
        stopper.start()  # the 30 s window is cut short: both are decided at once
        assert client.status(granted, wait=30)["status"] == "done"
        assert httpx.get(f"{service.url}/healthz").json() == {"status": "draining"}
        refused = httpx.post(f"{service.url}/v1/requests", json=GOOD)
        assert refused.status_code == 503 and "shutting down" in refused.json()["error"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert stopper.is_alive()  # results not collected yet: the listener waits (up to linger_s)
        payload, _ = client.fetch_latent(granted)
        assert payload is not None
        assert client.status(denied)["status"] == "denied"
    stopper.join(10)  # everything collected: closes long before linger_s
    assert not stopper.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{service.url}/healthz")
    assert 'edgediff_rejected_requests_total{reason="shutting_down"} 1.0' in engine.metrics.render().decode()


@pytest.mark.slow
def test_finished_records_are_bounded(start_service):
    service, engine = start_service(cache_gb=0, record_limit=2, window_s=0.1)
    with EdgeClient(service.url) as client:
        ids = []
        for i in range(4):
            ids.append(client.submit(f"r{i}", alpha=1.0, profile=(0.0001, 0.0001), steps=2)["id"])
            assert client.status(ids[-1], wait=30)["status"] == "denied"
        assert len(engine.jobs()) <= 3  # the newest, plus at most record_limit finished ones
        with pytest.raises(Exception, match="unknown request id"):
            client.status(ids[0])
    assert engine.stats.terminal["denied"] == 4


def test_every_metric_series_exists_at_zero_from_start_up(start_service):
    service, _ = start_service(cache_gb=0)
    text = httpx.get(f"{service.url}/metrics").text
    for outcome in ("done", "denied", "failed"):
        assert f'edgediff_requests_total{{outcome="{outcome}"}} 0.0' in text
    for reason in ("queue_full", "shutting_down"):
        assert f'edgediff_rejected_requests_total{{reason="{reason}"}} 0.0' in text
    for name in ("accepted_requests_total", "grants_total", "windows_total", "cache_hits_total", "queue_depth"):
        assert f"edgediff_{name} 0.0" in text
    assert "edgediff_batch_size_count 0.0" in text and "edgediff_step_latency_seconds_count 0.0" in text
