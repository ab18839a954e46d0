"""Images per request over the HTTP API: ``images`` = n is n requests of seeds s .. s+n-1,
accepted together or not at all; their images equal in-process ``generate --images n``."""

import json

import httpx
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from edgediff.cli import main
from edgediff.service.app import describe_validation
from edgediff.service.schemas import JobStatus, SubmitRequest
from edgediff.service.tenants import OverQuota, Quota, TenantLedger

GOOD = {"prompt": "a cat", "steps": 4, "alpha": 2.0, "profile": {"k": 0.2, "h": 0.01}}


@pytest.mark.parametrize("images", [0, 9, -1, 2.0, 2.5, "2", True, None])
def test_images_is_an_integer_from_1_to_8(images):
    with pytest.raises(ValidationError) as err:
        SubmitRequest.model_validate({**GOOD, "images": images})
    assert describe_validation(err.value.errors()).startswith("images: ")
    assert SubmitRequest.model_validate({**GOOD, "images": 8}).images == 8
    assert SubmitRequest.model_validate(GOOD).images == 1


def test_a_tenant_quota_takes_a_request_images_together():
    ledger = TenantLedger(["a"], [("a", Quota(concurrent=3))])
    ledger.check("a", 0.0, 1, count=3)  # room for all three
    ledger.accepted("a", 0.0, count=2)
    with pytest.raises(OverQuota, match="2 requests open and asks for 2 more") as err:
        ledger.check("a", 0.0, 1, count=2)  # one would fit, two do not: neither is taken
    assert err.value.reason == "over_concurrent"
    ledger.check("a", 0.0, 1, count=1)
    with pytest.raises(Exception, match="images: 4 images exceed tenant 'a''s quota of concurrent=3"):
        ledger.check("a", 0.0, 1, count=4)  # never fits: the request is wrong, not early
    rate = TenantLedger(["b"], [("b", Quota(rps=2))])
    rate.check("b", 0.0, 1, count=2)
    rate.accepted("b", 0.0, count=2)  # the bucket (2 tokens) is empty
    with pytest.raises(OverQuota, match="for 2 images; retry after 1 s"):
        rate.check("b", 0.5, 1, count=2)  # one token back after 0.5 s, two needed
    rate.check("b", 1.0, 1, count=2)
    rate.check("b", 1.0, 1, count=8)  # more than the bucket holds: a full bucket takes it (then in debt)
    rate.accepted("b", 1.0, count=8)
    with pytest.raises(OverQuota, match="retry after 4 s"):
        rate.check("b", 1.0, 1, count=1)  # 6 tokens in debt, at 2 a second


@pytest.mark.slow
def test_a_request_images_are_accepted_together_or_not_at_all(start_service, tmp_path):
    journal = tmp_path / "journal.jsonl"
    service, engine = start_service(cache_gb=0, queue_limit=2, window_s=30, b_max=0, journal=journal)
    url = f"{service.url}/v1/requests"
    for images, message in [(0, "body.images: Input should be greater than or equal to 1"), (2.0, "body.images")]:
        assert httpx.post(url, json={**GOOD, "images": images}).json()["error"].startswith(message)
    too_many = httpx.post(url, json={**GOOD, "images": 3})  # over the queue bound of 2: it never fits
    assert too_many.status_code == 422
    assert too_many.json()["error"] == "body.images: 3 images exceed this edge's queue limit of 2"
    assert engine.queue_state()[0] == 0 and engine.jobs() == [] and journal.read_text() == ""
    two = httpx.post(url, json={**GOOD, "seed": 7, "images": 2})
    assert two.status_code == 202
    body = two.json()
    assert set(body) == set(JobStatus.model_fields) | {"ids"}  # the status's keys, as before, and ids
    assert body["ids"][0] == body["id"] and len(set(body["ids"])) == 2
    assert two.headers["Location"] == f"/v1/requests/{body['id']}"
    assert [job.request.seed for job in engine.jobs()] == [7, 8]
    assert [json.loads(line)["id"] for line in journal.read_text().splitlines()] == body["ids"]
    full = httpx.post(url, json={**GOOD, "images": 1})  # the queue holds 2: nothing more until the window
    assert full.status_code == 503 and "queue is full" in full.json()["error"] and "Retry-After" in full.headers
    assert engine.queue_state()[0] == 2 and len(engine.jobs()) == 2 and len(journal.read_text().splitlines()) == 2
    for job_id in body["ids"]:  # each image is a request of its own
        status = httpx.get(f"{url}/{job_id}").json()
        assert status["status"] == "queued" and set(status) == set(JobStatus.model_fields)
    assert engine.stats.accepted == 2
    assert 'edgediff_rejected_requests_total{reason="queue_full"} 1.0' in httpx.get(f"{service.url}/metrics").text


@pytest.mark.slow
def test_generate_server_images_equal_in_process_images(start_service, tiny, tmp_path, capsys):
    """``generate --server URL --images 3`` sends one request and writes OUT-1..3.png, equal bit
    for bit to in-process ``generate --images 3`` (seeds 5, 6, 7; split = unsplit)."""
    service, engine = start_service(cache_gb=0)
    args = ["generate", "--prompt", "a lighthouse", "--steps", "6", "--seed", "5", "--images", "3", "--native-size"]
    remote, local = tmp_path / "remote.png", tmp_path / "local.png"
    assert main([*args, "--server", service.url, "--preset", "row9", "--alpha", "3", "--out", str(remote)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == [f"wrote {tmp_path}/remote-{i}.png" for i in (1, 2, 3)]
    assert all("granted" in line for line in lines[:3]) and lines[3].startswith("device step: declared")
    jobs = engine.jobs()
    assert len(jobs) == 3 and [job.request.seed for job in jobs] == [5, 6, 7]  # one request, three jobs
    assert all(job.snapshot.status == "done" and job.snapshot.split < 6 for job in jobs)
    assert engine.stats.accepted == 3 and not remote.exists()
    assert main([*args, "--out", str(local)]) == 0
    pixels = [[np.asarray(Image.open(tmp_path / f"{name}-{i}.png")) for i in (1, 2, 3)] for name in ("remote", "local")]
    for over_http, in_process in zip(*pixels):
        assert np.array_equal(over_http, in_process)
    assert not np.array_equal(pixels[0][0], pixels[0][1])  # seeds differ, images differ
