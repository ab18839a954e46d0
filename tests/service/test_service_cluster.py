"""Two sites of one CPU worker each on a local Ray cluster (this process, loopback), behind
one front door, end to end: the same API, ids by site, routing, per-site views, and a site
killed by PID (out of routing within a health interval; its open requests fail once)."""

import os
import signal
import time

import httpx
import numpy as np
import pytest

from edgediff.runtime.request import GenerationRequest
from edgediff.runtime.split import generate
from edgediff.service.client import EdgeClient, generate_remote
from helpers import run_cli

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'edgediff[ray]')")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

EDGE = (0.01, 0.004)
SLOW_DEVICE = (0.25, 0.02)
HEALTH_S = 0.5
BODY = {"prompt": "a lighthouse", "steps": 8, "alpha": 5.0, "profile": {"k": 0.25, "h": 0.02}}


@pytest.fixture(scope="module")
def door():
    """One Ray start for the module: site ``a`` (0.2 s windows) and site ``b`` (3 s windows,
    so its requests stay queued long enough to be caught by its death)."""
    from edgediff.service.cluster import FrontDoor, SiteSpec, front_door_thread
    from edgediff.service.config import ServiceConfig

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throw-away loopback cluster
    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    base = ServiceConfig(edge_profile=EDGE, cache_gb=0, linger_s=20)
    sites = [SiteSpec("a", base), SiteSpec("b", ServiceConfig(edge_profile=EDGE, cache_gb=0, window_s=3.0, seed=1))]
    front = FrontDoor(base, sites, address="local", health_s=HEALTH_S)
    try:
        with front_door_thread(front) as thread:
            yield thread
    finally:
        ray.shutdown()


def test_through_the_front_door_images_equal_in_process_split(door, tiny):
    request = GenerationRequest("a lighthouse at dusk", steps=12, seed=11)
    with EdgeClient(door.url) as client:
        result = generate_remote(client, request, tiny, alpha=5.0, profile=SLOW_DEVICE)
    status = result.status
    assert status["status"] == "done" and status["id"].split("-")[0] in ("a", "b")
    assert np.array_equal(result.image, generate(request, tiny, split=result.split).image)


def test_a_request_names_its_site_and_ids_say_where(door):
    with httpx.Client(base_url=door.url, timeout=30) as http:
        ids = {}
        for site in ("a", "b"):
            answer = http.post("/v1/requests", json={**BODY, "site": site})
            assert answer.status_code == 202, answer.text
            ids[site] = answer.json()["id"]
            assert ids[site].startswith(f"{site}-") and answer.headers["location"] == f"/v1/requests/{ids[site]}"
        for job_id in ids.values():
            status = http.get(f"/v1/requests/{job_id}", params={"wait": 10}).json()
            assert status["status"] == "done", status
            latent = http.get(f"/v1/requests/{job_id}/latent")
            assert latent.status_code == 200 and int(latent.headers["x-edgediff-split"]) == status["split"]
        images = http.post("/v1/requests", json={**BODY, "images": 2}).json()["ids"]  # routed once: one site
        assert len(images) == 2 and len({job_id.partition("-")[0] for job_id in images}) == 1
        for job_id in images:
            assert http.get(f"/v1/requests/{job_id}", params={"wait": 10}).json()["status"] == "done"
        assert http.get("/v1/requests/c-0123").status_code == 404
        assert http.get("/v1/requests/nodash").status_code == 404
        # per site: metrics (the sites' own series, labelled) and the status data
        metrics = http.get("/metrics").text
        for site in ("a", "b"):
            assert f'edgediff_site_up{{site="{site}"}} 1.0' in metrics
            assert f'edgediff_requests_total{{outcome="done",site="{site}"}}' in metrics
        sites = http.get("/v1/status").json()["sites"]
        assert set(sites) == {"a", "b"} and all(s["up"] for s in sites.values())
        assert "windows" in http.get("/sites/a/v1/status").json()
        info = http.get("/v1/info").json()
        assert {name: s["info"]["site"] for name, s in info["sites"].items()} == {"a": "a", "b": "b"}
        assert http.get("/healthz").json() == {"status": "ok", "sites": {"a": True, "b": True}}


def test_bad_bodies_are_refused_naming_the_field(door):
    with httpx.Client(base_url=door.url, timeout=30) as http:
        unknown = http.post("/v1/requests", json={**BODY, "site": "zz"})
        assert unknown.status_code == 422 and unknown.json()["error"].startswith("body.site: unknown site 'zz'")
        bad = http.post("/v1/requests", json={**BODY, "site": "A-1"})
        assert bad.status_code == 422 and bad.json()["error"].startswith("body.site")
        steps = http.post("/v1/requests", json={**BODY, "steps": "8"})
        assert steps.status_code == 422 and steps.json()["error"].startswith("body.steps")
        assert http.post("/v1/requests", content=b"{").status_code == 400


def test_a_killed_site_leaves_routing_and_its_open_requests_fail_once(door):
    front = door.engine  # the ServiceThread serves the front door
    with httpx.Client(base_url=door.url, timeout=30) as http:
        done = http.post("/v1/requests", json={**BODY, "site": "b"}).json()["id"]
        assert http.get(f"/v1/requests/{done}", params={"wait": 10}).json()["status"] == "done"
        queued = [http.post("/v1/requests", json={**BODY, "site": "b", "seed": i}).json()["id"] for i in range(3)]
        assert all(http.get(f"/v1/requests/{i}").json()["status"] == "queued" for i in queued)
        os.kill(front.sites["b"].pid, signal.SIGKILL)
        killed = time.monotonic()
        while http.get("/healthz").json()["sites"]["b"]:
            assert time.monotonic() - killed < 10 * HEALTH_S, "site b still routed"
            time.sleep(0.02)
        took = time.monotonic() - killed
        print(f"site b out of routing {took:.3f} s after its kill (health interval {HEALTH_S} s)")
        for job_id in queued:
            status = http.get(f"/v1/requests/{job_id}").json()
            assert status["status"] == "failed" and status["reason"].startswith("site b lost"), status
            assert http.get(f"/v1/requests/{job_id}/latent").status_code == 409
        # the request that was done before keeps its one terminal state; its latent died with the site
        assert http.get(f"/v1/requests/{done}").json()["status"] == "done"
        assert http.get(f"/v1/requests/{done}/latent").status_code == 410
        # new requests go to the live site; one that names the dead site is refused
        routed = [http.post("/v1/requests", json=BODY).json()["id"] for _ in range(3)]
        assert all(job_id.startswith("a-") for job_id in routed)
        # the wait is generous: on a loaded 2-core host the live site's Ray actor shares the cores
        assert all(http.get(f"/v1/requests/{i}", params={"wait": 25}).json()["status"] == "done" for i in routed)
        down = http.post("/v1/requests", json={**BODY, "site": "b"})
        assert down.status_code == 503 and "site b is down" in down.json()["error"]
        assert 'edgediff_front_lost_requests_total{site="b"} 3.0' in http.get("/metrics").text
        lost = http.get("/v1/info").json()["sites"]["b"]
        assert lost["up"] is False and lost["lost"].startswith("site b lost") and lost["info"] is None
        assert http.get("/healthz").status_code == 200


def test_shutdown_drains_the_sites_while_clients_collect(door):
    """As one site's shutdown: the sites drain with the listener up; the listener closes once
    the clients of the requests unfinished at the drain have their answers (not after linger_s)."""
    import threading

    with httpx.Client(base_url=door.url, timeout=30) as http:
        ids = [http.post("/v1/requests", json={**BODY, "site": "a", "seed": i}).json()["id"] for i in range(2)]
        stopping = threading.Thread(target=door.stop)
        started = time.monotonic()
        stopping.start()
        while not door.engine.closing:
            time.sleep(0.01)
        refused = http.post("/v1/requests", json=BODY)
        assert refused.status_code == 503 and "retry-after" in refused.headers
        for job_id in ids:
            assert http.get(f"/v1/requests/{job_id}/latent", params={"wait": 10}).status_code == 200
    stopping.join(30)
    assert not stopping.is_alive() and time.monotonic() - started < 15  # not the 20 s linger


def test_route_picks_least_expected_latency_and_skips_down_sites():
    """The rule alone (no Ray): wait to the next window plus the offloaded steps at the batch joined."""
    from edgediff.service.cluster import FrontDoor, SiteSpec, _Site
    from edgediff.service.config import ServiceConfig

    config = ServiceConfig(edge_profile=EDGE)
    front = FrontDoor(config, [SiteSpec("x", config), SiteSpec("y", config)], address="local")
    now = time.monotonic()
    load = dict(queued=0, members=0, next_window_s=0.1, window_s=0.5, k=0.01, h=0.004, gpus=1, queue_limit=4,
                n_hat_fraction=0.4, closing=False)  # fmt: skip
    front.sites = {
        "x": _Site(front.specs[0], None, 1, dict(load, members=10), now),  # 6 steps at b = 11: 0.1 + 6 * 0.114
        "y": _Site(front.specs[1], None, 2, dict(load, next_window_s=0.4), now),  # 0.4 + 6 * 0.014
    }
    assert front.route(10).name == "y"
    front.sites["y"].load["queued"] = 4  # a full queue scores infinity
    assert front.route(10).name == "x"
    front.sites["x"].up = False
    assert front.route(10).name == "y"  # the only site up, even with a full queue: it answers 503 itself
    front.sites["y"].up = False
    assert front.route(10) is None


def test_serve_ray_cli_errors_are_one_line(tmp_path):
    import socket

    def serve(*args):
        return run_cli("serve", "--port", "0", *args)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nobody = serve("--ray", f"127.0.0.1:{port}", "--sites", "2", "--edge-profile", "0.01,0.004", "--cache-gb", "0")
    assert nobody.returncode == 2 and "cannot connect to the Ray cluster" in nobody.stderr
    assert "Traceback" not in nobody.stderr
    alone = serve("--sites", "2")
    assert alone.returncode == 2 and "--sites and --health-interval need --ray" in alone.stderr
