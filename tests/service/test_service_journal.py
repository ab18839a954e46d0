"""The write-ahead journal: acceptance before the 202, and after a restart (even after
SIGKILL) every accepted request is answered by id; those that never finished are
``failed``, reason ``lost in restart``."""

import json
import os
import signal
import subprocess
import threading
import time

import httpx
import pytest

from edgediff.service.journal import LOST, JournalError, check_journal, replay

GOOD = {"prompt": "a cat", "steps": 4, "alpha": 2.0, "profile": {"k": 0.5, "h": 0.01}}


def _records(path):
    """The decodable lines (a process killed mid-write may leave a torn one)."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return records


def test_restart_answers_every_journaled_request(start_service, tmp_path):
    journal = tmp_path / "journal.jsonl"
    lines = [
        {"id": "finished", "status": "queued", "steps": 4, "time": 0.0},
        {"id": "lost", "status": "queued", "steps": 6, "time": 0.0},
        {"id": "finished", "status": "done", "reason": None, "window": 3, "split": 1},
        {"id": "denied", "status": "queued", "steps": 4, "time": 0.0},
        {"id": "denied", "status": "denied", "reason": None, "window": 3, "split": 4},
    ]
    journal.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"id": "torn", "sta')
    service, engine = start_service(cache_gb=0, journal=journal)
    answers = {i: httpx.get(f"{service.url}/v1/requests/{i}").json() for i in ("finished", "lost", "denied")}
    assert answers["lost"]["status"] == "failed" and answers["lost"]["reason"] == LOST
    assert answers["finished"]["status"] == "done" and answers["finished"]["split"] == 1
    assert answers["denied"]["status"] == "denied" and answers["denied"]["granted"] is False
    latent = httpx.get(f"{service.url}/v1/requests/finished/latent")
    assert latent.status_code == 409 and latent.json()["status"] == "done"  # the latent did not survive
    assert "edgediff_lost_in_restart_total 1.0" in httpx.get(f"{service.url}/metrics").text
    new = httpx.post(f"{service.url}/v1/requests", json=GOOD).json()["id"]
    assert httpx.get(f"{service.url}/v1/requests/{new}", params={"wait": 30}).json()["status"] == "done"
    service.stop()
    records = _records(journal)[len(lines) :]  # the torn line is skipped and kept on its own line
    assert {"id": "lost", "status": "failed", "reason": LOST, "window": None, "split": None} in records
    assert [r["status"] for r in records if r["id"] == new] == ["queued", "done"]
    assert replay(journal, keep=10).lost == [] and replay(journal, keep=10).skipped == 1


def test_unusable_journal_paths(tmp_path):
    with pytest.raises(JournalError, match="is a directory"):
        check_journal(tmp_path)
    with pytest.raises(JournalError, match="does not exist"):
        check_journal(tmp_path / "missing" / "journal.jsonl")
    wrong = tmp_path / "image.png"
    wrong.write_bytes(b"\x89PNG\r\n\x1a\n not a journal")
    with pytest.raises(JournalError, match="not an edgediff journal"):
        check_journal(wrong)
    check_journal(tmp_path / "new.jsonl")  # a new file is fine


def test_sigkill_under_load_then_restart_answers_every_accepted_request(serve_subprocess, start_service, tmp_path):
    journal = tmp_path / "journal.jsonl"
    options = ["--window", "0.3", "--cache-gb", "0", "--edge-profile", "0.01,0.004", "--journal", str(journal)]
    process, url = serve_subprocess(*options, output=subprocess.DEVNULL)
    engine_pid = httpx.get(f"{url}/v1/info").json()["workers"]["each"][0]["pid"]
    accepted, stop = [], threading.Event()

    def client(i):  # submit until the kill: a bounded load of 4 clients on loopback
        with httpx.Client(timeout=5) as http:
            for n in range(50):
                if stop.is_set():
                    return
                try:
                    response = http.post(f"{url}/v1/requests", json={**GOOD, "seed": n, "steps": 40 + i})
                except httpx.TransportError:
                    return
                if response.status_code == 202:
                    accepted.append(response.json()["id"])
                time.sleep(0.02)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        os.kill(engine_pid, signal.SIGKILL)  # the whole service: its engine process, then its HTTP process
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        if process.poll() is None:
            process.kill()
    assert len(accepted) >= 8
    before = replay(journal, keep=1000)
    assert before.lost, "nothing was in flight at the kill: the test proves nothing"
    written = {r["id"] for r in _records(journal) if r["status"] == "queued"}
    assert set(accepted) <= written  # every 202 was journaled first
    service, _ = start_service(cache_gb=0, journal=journal)  # the restart (in-process: faster)
    with httpx.Client(timeout=10) as http:
        answers = {i: http.get(f"{service.url}/v1/requests/{i}") for i in accepted}
    assert all(a.status_code == 200 for a in answers.values())  # nothing 404s
    lost = {r["id"] for r in before.lost}
    for job_id, answer in answers.items():
        body = answer.json()
        if job_id in lost:
            assert body["status"] == "failed" and body["reason"] == LOST
        else:
            assert body["status"] in ("done", "denied", "failed") and body["reason"] != LOST
