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


@pytest.mark.slow
def test_restart_answers_every_journaled_request(start_service, tmp_path):
    journal = tmp_path / "journal.jsonl"
    lines = [
        {"id": "finished", "status": "queued", "steps": 4, "time": 0.0},
        {"id": "lost", "status": "queued", "steps": 6, "time": 0.0},
        {"id": "finished", "status": "done", "reason": None, "window": 3, "split": 1},
        {"id": "denied", "status": "queued", "steps": 4, "time": 0.0},
        {"id": "denied", "status": "done", "reason": None, "window": "abc", "split": 1},  # not a record
        {"id": "denied", "status": "denied", "reason": None, "window": 3, "split": 4},
        {"id": "z", "status": "done"},  # never accepted: not a record
    ]
    journal.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"id": "torn", "sta')
    service, engine = start_service(cache_gb=0, journal=journal)
    answers = {i: httpx.get(f"{service.url}/v1/requests/{i}").json() for i in ("finished", "lost", "denied")}
    assert answers["lost"]["status"] == "failed" and answers["lost"]["reason"] == LOST
    assert answers["finished"]["status"] == "done" and answers["finished"]["split"] == 1
    assert answers["denied"]["status"] == "denied" and answers["denied"]["granted"] is False
    assert answers["denied"]["window"] == 3 and httpx.get(f"{service.url}/v1/requests/z").status_code == 404
    latent = httpx.get(f"{service.url}/v1/requests/finished/latent")
    assert latent.status_code == 409 and latent.json()["status"] == "done"  # the latent did not survive
    assert "edgediff_lost_in_restart_total 1.0" in httpx.get(f"{service.url}/metrics").text
    new = httpx.post(f"{service.url}/v1/requests", json=GOOD).json()["id"]
    assert httpx.get(f"{service.url}/v1/requests/{new}", params={"wait": 30}).json()["status"] == "done"
    service.stop()
    records = _records(journal)[len(lines) :]  # the torn line is skipped and kept on its own line
    assert {"id": "lost", "status": "failed", "reason": LOST, "window": None, "split": None} in records
    assert [r["status"] for r in records if r["id"] == new] == ["queued", "done"]
    assert replay(journal, keep=10).lost == [] and replay(journal, keep=10).skipped == 3


NOT_RECORDS = [
    {"id": "z", "status": "done"},  # terminal, never accepted
    {"id": "w", "status": "queued", "steps": "abc", "time": 0.0},
    {"id": "w", "status": "queued", "steps": True, "time": 0.0},
    {"id": "w", "status": "queued", "time": 0.0},  # no steps
    {"id": "a", "status": "done", "reason": None, "window": "abc", "split": 1},
    {"id": "a", "status": "done", "reason": None, "window": 1, "split": 1.5},
    {"id": "a", "status": "done", "reason": None, "window": -1, "split": 1},
    {"id": "a", "status": "done", "reason": None, "window": 1, "split": 9},  # past its 4 steps
    {"id": "a", "status": "done", "reason": 3, "window": 1, "split": 1},
    {"id": "a", "status": "finished", "reason": None, "window": 1, "split": 1},  # unknown status
    {"id": "a", "status": "queued", "steps": 4, "time": 0.0, "tenant": 7},
    ["a", "done"],
    {"id": 5, "status": "done"},
]


def test_replay_skips_lines_that_are_not_records_with_one_warning(tmp_path, caplog):
    from edgediff.service.job import RestoredJob
    from edgediff.service.schemas import JobStatus

    journal = tmp_path / "journal.jsonl"
    good = [
        {"id": "a", "status": "queued", "steps": 4, "time": 0.0},
        {"id": "b", "status": "queued", "steps": 6, "time": 0.0, "tenant": "t"},
        {"id": "c", "status": "queued", "steps": 5, "time": 0.0},
        {"id": "c", "status": "failed", "reason": "boom", "window": None, "split": None},
        {"id": "b", "status": "denied", "reason": None, "window": 2, "split": 6},
        {"id": "d", "status": "queued", "steps": 3, "time": 1.0},
    ]
    lines = [good[0], *NOT_RECORDS, *good[1:]]
    journal.write_text("".join(json.dumps(line) + "\n" for line in lines) + "not json\n")
    with caplog.at_level("WARNING", logger="edgediff.service.journal"):
        check_journal(journal)  # what `edgediff serve` checks first: quiet, the engine's replay warns
        replayed = replay(journal, keep=10)
    warnings = [r.getMessage() for r in caplog.records if r.name == "edgediff.service.journal"]
    assert warnings == [
        f"journal {journal}: skipped {len(NOT_RECORDS) + 1} line(s) of {len(lines) + 1} that are not records"
    ]
    assert replayed.skipped == len(NOT_RECORDS) + 1 and replayed.lines == len(lines) + 1
    assert [r["id"] for r in replayed.lost] == ["a", "d"]  # in order; "a"'s bad terminal lines left it unfinished
    assert [(r["id"], r["status"], r["steps"], r["tenant"]) for r in replayed.finished] == [
        ("c", "failed", 5, None),
        ("b", "denied", 6, "t"),
    ]
    assert replayed.finished[0]["reason"] == "boom" and replayed.finished[1]["window"] == 2
    for record in replayed.finished:  # what GET /v1/requests/{id} answers fits its schema
        JobStatus.model_validate(RestoredJob.from_record(record, record["status"], record["reason"]).to_status())
    for record in replayed.lost:
        JobStatus.model_validate(RestoredJob.from_record(record, "failed", LOST).to_status())
    assert replay(journal, keep=1).finished == replayed.finished[1:]  # the newest kept


def test_a_first_line_shaped_like_a_record_is_a_journal(tmp_path):
    journal = tmp_path / "journal.jsonl"
    journal.write_text(json.dumps({"id": "z", "status": "done"}) + "\n")
    assert replay(journal, keep=10, warn=False).skipped == 1
    journal.write_text(json.dumps({"status": "done"}) + "\n")
    with pytest.raises(JournalError, match="not an edgediff journal"):
        replay(journal, keep=10)


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


@pytest.mark.slow
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


def test_a_schedule_longer_than_its_steps_keeps_its_split_in_calls(tmp_path):
    """Heun, KDPM2, PNDM: the acceptance line carries ``calls`` (the unit of the split), and a
    split past ``steps`` but within ``calls`` is a valid record of a granted request."""
    from edgediff.service.job import RestoredJob
    from edgediff.service.journal import Journal

    path = tmp_path / "journal.jsonl"
    journal = Journal(path, fsync=False)
    journal.accepted("h", 10, calls=19)
    journal.accepted("d", 10, calls=10)
    journal.finished("h", "done", None, 0, 12)  # 7 calls at the edge
    journal.finished("d", "done", None, 0, 12)  # past its 10 calls: not a record
    journal.close()
    assert "calls" not in json.loads(path.read_text().splitlines()[1])  # only where it differs
    (record,) = replay(path, keep=10).finished
    status = RestoredJob.from_record(record, "done", None).to_status()
    assert (status["steps"], status["calls"], status["split"], status["offloaded_steps"]) == (10, 19, 12, 7)
    assert status["granted"] is True
