"""The front door's routing and site loss without Ray: fake sites answer its calls the way
Ray actor handles do (``handle.call.remote(...)`` -> a ref whose ``future()`` resolves later)."""

import asyncio
import concurrent.futures
import time

import numpy as np
import pytest

from edgediff.service.cluster import FrontDoor, SiteSpec, _Site
from edgediff.service.config import ServiceConfig
from edgediff.service.face import Answer
from edgediff.service.routing import expected_latency, running_work
from edgediff.service.schemas import SubmitRequest

ray = pytest.importorskip("ray", reason="the front door catches Ray's actor errors")

EDGE = (0.01, 0.004)
LOAD = dict(queued=0, members=0, next_window_s=0.2, window_s=0.5, k=0.05, h=0.004, gpus=1, queue_limit=64,
            n_hat_fraction=0.4, closing=False, running_steps=[])  # fmt: skip


class _Ref:
    def __init__(self, call):
        self.call = call

    def future(self):
        future = concurrent.futures.Future()

        def answer():
            try:
                future.set_result(self.call())
            except Exception as err:
                future.set_exception(err)

        asyncio.get_running_loop().call_later(0.005, answer)  # answers after the caller awaits, as Ray does
        return future


class _Method:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        return _Ref(lambda: self.fn(*args))


class FakeSite:
    """A site's actor: queues what it is sent, reports its load; ``dead`` raises Ray's error."""

    def __init__(self, name, load):
        self.name, self.load, self.dead, self.count = name, dict(load), False, 0
        for call in ("submit", "poll", "status", "latent"):
            setattr(self, call, _Method(getattr(self, f"_{call}")))

    def _alive(self):
        if self.dead:
            raise ray.exceptions.RayActorError()

    def _submit(self, body, tenant):
        self._alive()
        ids = [f"{self.name}-{self.count + i + 1}" for i in range(body.images)]  # one request per image
        self.count += body.images
        self.load["queued"] += body.images
        status = {"id": ids[0], "status": "queued", "steps": body.steps, "ids": ids}
        return Answer(202, status), dict(self.load)

    def _poll(self, open_ids):
        self._alive()
        return dict(self.load), {}

    def _status(self, job_id, tenant, *args):
        self._alive()
        return Answer(200, {"id": job_id, "status": "running"})

    _latent = _status


def front_door(loads):
    config = ServiceConfig(edge_profile=EDGE)
    names = [f"s{i}" for i in range(len(loads))]
    front = FrontDoor(config, [SiteSpec(n, config) for n in names], address="local")
    now = time.monotonic()
    fakes = [FakeSite(n, load) for n, load in zip(names, loads)]
    front.sites = {n: _Site(spec, fake, i, dict(load), now) for i, (n, spec, fake, load) in
                   enumerate(zip(names, front.specs, fakes, loads))}  # fmt: skip
    return front, fakes


def body(steps=400, images=1):
    return SubmitRequest(prompt="a burst", steps=steps, alpha=1.0, preset="row0", images=images)


def test_a_burst_spreads_over_idle_sites():
    """12 requests sent at once (400 steps): site 0 holds 6 members, site 1 is idle; routed
    before any submit answers, they used to all go to the last report's best site."""
    busy = dict(LOAD, members=6, running_steps=[200] * 6)
    front, fakes = front_door([busy, dict(LOAD, next_window_s=0.25)])

    async def burst():
        return await asyncio.gather(*(front.submit(body(), None) for _ in range(12)))

    answers = asyncio.run(burst())
    assert all(a.status_code == 202 for a in answers)
    assert fakes[1].count >= 8 and fakes[0].count + fakes[1].count == 12  # the idle site takes most
    assert fakes[0].count >= 1  # and the busy one some, once the idle one's queue grows


def test_members_near_the_end_of_their_edge_steps_cost_little():
    """The same prediction as a window's: a running member slows only the steps it still has."""
    m = 240  # 400 steps, N_hat 160
    leaving = dict(LOAD, members=6, running_steps=[1] * 6)  # six members in their last step
    staying = dict(LOAD, members=2, running_steps=[300, 300])  # two for all of this request's steps
    front, _ = front_door([staying, leaving])
    assert front.route(400).name == "s1"
    assert running_work([1] * 6, m) == 6 and running_work([300, 300], m) == 2 * m
    # without the steps left, members count for every step (the rule as it was)
    assert expected_latency(0, m, 0.05, 0.004, 6, 0, 64) == pytest.approx(m * (0.05 * 7 + 0.004))
    scores = expected_latency(0, m, 0.05, 0.004, [2, 6], 0, 64, [2 * m, 6])
    assert np.argmin(scores) == 1


def test_a_site_lost_with_requests_in_flight_answers_each_once_with_the_reason():
    front, fakes = front_door([dict(LOAD), dict(LOAD, next_window_s=0.45)])

    async def scenario():
        sent = await asyncio.gather(*(front.submit(body(), None) for _ in range(4)))
        ids = [a.content["id"] for a in sent]
        on_s0 = [i for i in ids if i.startswith("s0-")]
        assert on_s0 and len(front.sites["s0"].open) == len(on_s0)
        fakes[0].dead = True
        await front._poll(front.sites["s0"])  # the health poll finds the actor gone
        await front._poll(front.sites["s0"])  # a second look changes nothing
        first = [await front.status(i, None, 0.0, "finished") for i in on_s0]
        again = [await front.status(i, None, 0.0, "finished") for i in on_s0]
        latent = [await front.latent(i, None, 0.0) for i in on_s0]
        after = await front.submit(body(), None)
        return on_s0, first, again, latent, after

    on_s0, first, again, latent, after = asyncio.run(scenario())
    reason = "site s0 lost: its actor (pid 0) died"
    for answer, repeat, gone in zip(first, again, latent):
        assert answer.status_code == 200 and answer.content["status"] == "failed"
        assert answer.content["reason"] == reason and repeat.content == answer.content  # one terminal answer
        assert gone.status_code == 409 and gone.content["reason"] == reason
    assert front.metrics_.lost.labels("s0")._value.get() == len(on_s0)  # counted once each
    assert after.status_code == 202 and after.content["id"].startswith("s1-")  # routing goes on without s0


def test_a_request_images_go_to_one_site_and_each_ends_once_when_it_is_lost():
    front, fakes = front_door([dict(LOAD), dict(LOAD, next_window_s=0.45)])

    async def scenario():
        sent = await front.submit(body(images=3), None)
        site = front.sites[sent.content["id"].partition("-")[0]]
        fakes[list(front.sites).index(site.name)].dead = True
        await front._poll(site)
        return sent, site, [await front.status(i, None, 0.0, "finished") for i in sent.content["ids"]]

    sent, site, statuses = asyncio.run(scenario())
    ids = sent.content["ids"]
    assert sent.status_code == 202 and len(ids) == 3 and {i.partition("-")[0] for i in ids} == {site.name}
    assert front.metrics_.lost.labels(site.name)._value.get() == 3  # all three were open at the site
    assert [s.content["id"] for s in statuses] == ids and all(s.content["status"] == "failed" for s in statuses)
    assert all("ids" not in s.content for s in statuses)  # each a request's own status
