"""API keys: each tenant sees only its own requests and, by default, its own latent cache."""

import logging

import httpx
import pytest

from edgediff.service.client import EdgeClient
from edgediff.service.tenants import ApiKeyError, load_api_keys

KEYS = "# tenant key\nalice alice-key-0123456789\nbob   bob-key-0123456789ab  # a comment\n"
SLOW = (0.5, 0.01)


def _keys(tmp_path, text=KEYS):
    path = tmp_path / "keys.txt"
    path.write_text(text)
    return load_api_keys(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("alice\n", "keys.txt:1: expected 'TENANT KEY'"),
        ("al ice key-0123456789abcdef\n", r"got 3 field\(s\)"),
        ("alice short\n", "at least 16 characters"),
        ("a/b key-0123456789abcdef\n", "tenant must be"),
        ("a key-0123456789abcdef\nb key-0123456789abcdef\n", "keys.txt:2: this key already belongs to tenant 'a'"),
        ("# nothing\n", "no keys"),
    ],
)
def test_bad_keys_files(tmp_path, text, message):
    with pytest.raises(ApiKeyError, match=message):
        _keys(tmp_path, text)


@pytest.mark.slow
def test_tenants_see_only_their_own_requests(start_service, tmp_path):
    service, engine = start_service(cache_gb=0, api_keys=_keys(tmp_path))
    url = f"{service.url}/v1/requests"
    body = {"prompt": "a secret prompt", "steps": 4, "alpha": 1.0, "profile": {"k": 0.5, "h": 0.01}}
    assert httpx.post(url, json=body).status_code == 401
    wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer not-a-key-0123456789"})
    assert wrong.status_code == 401 and wrong.json()["error"].startswith("unknown API key")
    assert wrong.headers["WWW-Authenticate"] == "Bearer"
    with EdgeClient(service.url, api_key="alice-key-0123456789") as alice:
        job = alice.submit("a secret prompt", alpha=1.0, profile=SLOW, steps=4)["id"]
        assert alice.status(job, wait=30)["status"] == "done"
        assert alice.fetch_latent(job)[0] is not None
    bob = {"X-API-Key": "bob-key-0123456789ab"}
    for path in (f"{url}/{job}", f"{url}/{job}/latent"):
        answer = httpx.get(path, headers=bob)  # exactly as an unknown id: bob cannot tell it exists
        assert answer.status_code == 404 and answer.json() == {"error": f"unknown request id {job!r}"}
        assert httpx.get(path).status_code == 401
    assert httpx.get(f"{service.url}/v1/info", headers=bob).status_code == 200
    assert httpx.get(f"{service.url}/healthz").status_code == 200  # probes need no key


@pytest.mark.parametrize("sharing", [False, True])
@pytest.mark.slow
def test_the_latent_cache_is_per_tenant_unless_shared(start_service, tmp_path, caplog, sharing):
    caplog.set_level(logging.DEBUG)
    service, engine = start_service(cache_gb=0.01, api_keys=_keys(tmp_path), cache_sharing=sharing)
    prompt = "a castle on a hill"

    def hit_step(key, seed):
        with EdgeClient(service.url, api_key=key) as client:
            job = client.submit(prompt, alpha=5.0, profile=SLOW, steps=20, seed=seed)["id"]
            status = client.status(job, wait=30)
            assert status["status"] == "done"
            return status["cache_hit_step"]

    assert hit_step("alice-key-0123456789", 1) == 0
    # a prober with another key learns nothing from cache_hit_step unless sharing is switched on
    assert hit_step("bob-key-0123456789ab", 2) == (6 if sharing else 0)
    assert hit_step("alice-key-0123456789", 3) == 6
    assert engine.info()["cache"]["per_tenant"] is not sharing
    assert caplog.text and prompt not in caplog.text  # the logs carry no prompt
