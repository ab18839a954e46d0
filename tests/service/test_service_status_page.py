"""The live status page (``GET /``) in a real headless browser (Debian's ``chromium``) against
a live service with traffic: the page's script ran and rendered the service's numbers."""

import json
import re
import shutil
import subprocess
import threading
import time

import httpx
import pytest

from edgediff.service.status import WINDOWS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def traffic(url: str, stop: threading.Event) -> None:
    """Rounds of six requests (repeated prompts: cache hits; slow and fast devices: grants and denials)."""
    with httpx.Client(base_url=url, timeout=10) as client:
        i = 0
        while not stop.is_set():
            for j in range(6):
                body = {"prompt": f"a red fox {i % 3}", "steps": 20, "seed": i, "alpha": 3.0}
                client.post("/v1/requests", json=dict(body, preset="row9" if j % 3 else "row3"))
                i += 1
            stop.wait(0.3)


def browse(url: str) -> str:
    """The DOM after the page's script ran (virtual time lets its timers and fetches play out)."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=4000", "--dump-dom", url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def text(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert match, f"#{element_id} not in the page"
    return match.group(1)


@pytest.mark.slow
def test_status_json_is_bounded_and_consistent(start_service):
    service, engine = start_service(b_max=4)
    stop = threading.Event()
    thread = threading.Thread(target=traffic, args=(service.url, stop))
    thread.start()
    try:
        time.sleep(2.5)
    finally:
        stop.set()
        thread.join()
    status = httpx.get(f"{service.url}/v1/status").json()
    assert 0 < len(status["windows"]) <= WINDOWS
    for w in status["windows"]:
        assert w["requests"] == w["granted"] + w["denied"] + w["failed"] and w["granted"] <= 4
        assert len(w["splits"]) == w["granted"] and all(0 <= n <= 20 for n in w["splits"])
    assert status["cache"]["entries"] == len(engine.cache) > 0 and 0 < status["cache"]["hit_rate"] <= 1
    assert status["latency_s"]["granted"]["count"] > 0
    assert status["latency_s"]["granted"]["p50"] <= status["latency_s"]["granted"]["p99"]
    assert status["thumbnails"] and status["thumbnails"][0]["png"].startswith("data:image/png;base64,")
    assert any(b["mean_batch"] > 0 for b in status["occupancy"])
    page = httpx.get(f"{service.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text.replace("http://www.w3.org/2000/svg", "")  # no external assets
    assert "https://" not in page.text and "<link" not in page.text and "src=" not in page.text


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
@pytest.mark.slow
@pytest.mark.browser
def test_status_page_renders_live_data_in_chromium(start_service):
    service, engine = start_service(b_max=4)
    stop = threading.Event()
    thread = threading.Thread(target=traffic, args=(service.url, stop))
    thread.start()
    try:
        time.sleep(2.0)
        dom = browse(f"{service.url}/")
    finally:
        stop.set()
        thread.join()
    assert text(dom, "state") == "serving" and text(dom, "updated") != "never"
    assert text(dom, "summary").startswith("model tiny · policy exact")
    assert int(text(dom, "cache-entries")) > 0 and text(dom, "hit-rate").endswith("%")
    accepted, rest = text(dom, "requests").split(" · ")
    assert int(accepted) > 0 and sum(int(x) for x in rest.split(" / ")) > 0
    assert float(text(dom, "p50-granted")) <= float(text(dom, "p99-granted"))
    rows = re.findall(r'<tr class="window" data-window="(\d+)">(.*?)</tr>', dom)
    assert rows, "no window rows rendered"
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", rows[0][1])
    assert len(cells) == 10 and int(cells[2]) == int(cells[3]) + int(cells[4]) + int(cells[5])
    assert len(re.findall(r'<img src="data:image/png;base64,', dom)) >= 1
    assert len(re.findall(r'class="bar"', dom)) >= 1  # occupancy / queue bars drawn


def test_thumbnail_decodes_are_rate_limited_by_their_cost():
    import numpy as np

    from edgediff.service.status import THUMBNAIL_SHARE, StatusBoard

    class SlowVae:
        calls = 0

        def decode(self, latent):
            SlowVae.calls += 1
            time.sleep(0.02)
            return np.zeros((1, 8, 8, 3), np.uint8)

    class State:
        split, steps, latent = 5, 20, None

    board, model = StatusBoard(b_max=4), SlowVae()
    board.handoff(State())
    assert board.render_thumbnail(model) and not board.render_thumbnail(model)  # nothing new pending
    board.handoff(State())
    assert not board.render_thumbnail(model)  # too soon: a 20 ms decode waits >= 1 s
    assert board._next_thumbnail - time.perf_counter() > max(0.5, 0.02 / THUMBNAIL_SHARE - 0.5)
    board._next_thumbnail = 0.0
    assert board.render_thumbnail(model) and SlowVae.calls == 2
    thumbnails = board._thumbnails
    assert len(thumbnails) == 2 and thumbnails[0]["png"].startswith("data:image/png;base64,")


@pytest.mark.slow
def test_with_api_keys_the_status_needs_a_key_and_shows_no_images(start_service, tmp_path):
    from edgediff.service.tenants import load_api_keys

    keys = tmp_path / "keys.txt"
    keys.write_text("alice alice-key-0123456789\n")
    service, engine = start_service(api_keys=load_api_keys(keys))
    headers = {"Authorization": "Bearer alice-key-0123456789"}
    body = {"prompt": "a private prompt", "steps": 20, "seed": 1, "alpha": 3.0, "preset": "row9"}
    job = httpx.post(f"{service.url}/v1/requests", json=body, headers=headers).json()["id"]
    httpx.get(f"{service.url}/v1/requests/{job}/latent", params={"wait": 20}, headers=headers, timeout=30)
    deadline = time.monotonic() + 30
    while not engine.board._thumbnails:  # the engine decodes its thumbnail (the next loop turn): one exists
        assert time.monotonic() < deadline, "no thumbnail was decoded: the check below would prove nothing"
        time.sleep(0.02)
    assert httpx.get(f"{service.url}/v1/status").status_code == 401
    status = httpx.get(f"{service.url}/v1/status", headers=headers).json()
    assert status["terminal"]["done"] == 1 and status["thumbnails"] == []
    assert "private" not in json.dumps(status)
    page = httpx.get(f"{service.url}/")
    assert page.status_code == 200 and 'id="keyform"' in page.text  # no data; it asks for a key on a 401
