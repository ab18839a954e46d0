"""Faults inside the edge: one poisoned request fails only itself, and whatever fails, every
accepted request reaches exactly one terminal state (journal, counters, status)."""

import json
from collections import Counter

import httpx
import pytest

from edgediff.runtime.executor import BatchedExecutor
from edgediff.service.client import EdgeClient

SLOW = {"k": 0.5, "h": 0.01}  # a slow device: the edge grants it


def _submit(url, **fields):
    body = {"prompt": "a cat", "steps": 8, "alpha": 1.0, "profile": SLOW, **fields}
    response = httpx.post(f"{url}/v1/requests", json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _terminal_once(journal, engine, ids):
    """Each id has exactly one terminal record, and the counters agree."""
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    terminal = Counter(r["id"] for r in records if r["status"] in ("done", "denied", "failed"))
    assert terminal == Counter(ids)
    assert sum(engine.stats.terminal.values()) == engine.stats.accepted == len(ids)
    return {r["id"]: r for r in records if r["status"] in ("done", "denied", "failed")}


@pytest.mark.slow
def test_a_poisoned_request_fails_only_itself(start_service, tiny, monkeypatch, tmp_path):
    monkeypatch.setattr(tiny, "check_steps", lambda steps: None)  # as before validation: steps 1000 gets in
    journal = tmp_path / "journal.jsonl"
    service, engine = start_service(cache_gb=0, window_s=0.3, journal=journal)
    normal = [_submit(service.url, seed=i) for i in range(8)]
    poisoned = _submit(service.url, steps=1000, seed=99)
    with EdgeClient(service.url) as client:
        statuses = {i: client.status(i, wait=30) for i in [*normal, poisoned]}
    assert all(statuses[i]["status"] == "done" for i in normal)
    assert statuses[poisoned]["status"] == "failed" and statuses[poisoned]["granted"]
    assert "IndexError" in statuses[poisoned]["reason"]
    service.stop()
    _terminal_once(journal, engine, [*normal, poisoned])


@pytest.mark.slow
def test_an_unattributable_step_failure_still_answers_everyone(start_service, monkeypatch, tmp_path):
    complete, calls = BatchedExecutor.complete, []

    def fails_third_call(self, pending):
        left = complete(self, pending)  # members may have finished in this step: the failure must not lose them
        calls.append(len(left))
        if len(calls) == 3:
            raise RuntimeError("device lost")
        return left

    monkeypatch.setattr(BatchedExecutor, "complete", fails_third_call)
    journal = tmp_path / "journal.jsonl"
    service, engine = start_service(cache_gb=0, window_s=0.3, journal=journal)
    ids = [_submit(service.url, seed=i, steps=3 + i % 3) for i in range(6)]
    with EdgeClient(service.url) as client:
        statuses = [client.status(i, wait=30)["status"] for i in ids]
        assert "failed" in statuses and all(s in ("done", "failed") for s in statuses)
        after = _submit(service.url, seed=50)  # the engine goes on with a fresh executor
        assert client.status(after, wait=30)["status"] == "done"
    service.stop()
    records = _terminal_once(journal, engine, [*ids, after])
    assert any(r["reason"] == "edge step failed: RuntimeError: device lost" for r in records.values())
