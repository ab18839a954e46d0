"""Several edge sites on a Ray cluster behind one HTTP front door (``edgediff serve --ray``).

Each site is a window scheduler — an :class:`~edgediff.service.engine.EdgeEngine` built from
its :class:`~edgediff.service.config.ServiceConfig` — in a Ray actor that asks the cluster
for the site's devices (``num_gpus`` on a CUDA device, else ``num_cpus``; Ray places it and
sets ``CUDA_VISIBLE_DEVICES``). The front door is this process: the service's own FastAPI
routes (:func:`edgediff.service.app.add_routes`, same API, same validation) answered by a
:class:`FrontDoor` that forwards each call to the site's actor, which answers with the same
:class:`~edgediff.service.app.EngineFace` a single-process service uses.

Why Ray actors and not Ray Serve: a site is stateful (its queue, batch, cache and the
requests it holds by id), so every poll of a request must reach the site that took it,
while Serve's replicas are interchangeable and its router balances by replica queue length;
routing here is the window-aware rule of :mod:`edgediff.service.routing`, which needs each
site's next window end and calibration. Serve would also add its controller and proxy
processes (and grpc) to every deployment; actors need nothing beyond ``ray``.

Request ids are ``<site>-<hex>`` (unique across sites, routable). A request may name its
``site``; otherwise the front door picks the site of least expected latency from each site's
last reported load (:meth:`~edgediff.service.engine.EdgeEngine.load`, refreshed by every
submit and every health poll). Every ``health_s`` seconds the front door polls each site: a
site that does not answer within the interval is taken out of routing (and back in when it
answers); a site whose actor died is out for good, and each request it had accepted whose
terminal state the front door had not yet seen is answered ``failed`` with reason ``site
<name> lost``. The front door learns terminal states at each poll (and whenever it relays
one), so a request ends in exactly one terminal state even when its site dies; the latent
of a request that was ``done`` on a site that died is gone (410).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from typing import get_args

import numpy as np

from edgediff.errors import InputError
from edgediff.service.app import EngineFace, unknown_id
from edgediff.service.config import ServiceConfig
from edgediff.service.face import Answer
from edgediff.service.routing import least_expected_latency, running_work
from edgediff.service.schemas import SITE_NAME, TERMINAL, SubmitRequest

log = logging.getLogger(__name__)

HEALTH_S = 1.0  # default health interval
START_TIMEOUT_S = 600.0  # a site that is not placed and loaded within this fails the deployment


class ClusterError(InputError):
    """The sites cannot be deployed (Ray missing or unreachable, a bad site name, no room)."""


@dataclass(frozen=True)
class SiteSpec:
    """One site to deploy: its ``name`` (``[a-z0-9_]+``, the prefix of its request ids) and
    its service parameters."""

    name: str
    config: ServiceConfig

    def __post_init__(self):
        import re

        if not re.fullmatch(SITE_NAME.strip("^$"), self.name):
            raise ClusterError(f"site name {self.name!r} must be lowercase letters, digits and _")

    @property
    def resources(self) -> dict:
        """What the site asks the cluster for: its ``workers`` devices (``ServiceConfig.workers``
        where the config has it, else one), GPUs on a CUDA device, else CPUs."""
        count = getattr(self.config, "workers", 1)
        return {"num_gpus": count, "num_cpus": 0} if self.config.device.startswith("cuda") else {"num_cpus": count}


def sites_from(config: ServiceConfig, count: int) -> list[SiteSpec]:
    """``count`` identical sites ``site0 .. site{count-1}`` (``edgediff serve --sites N``),
    each with its own seed (``config.seed + i``)."""
    if count < 1:
        raise ClusterError(f"--sites must be >= 1, got {count}")
    return [SiteSpec(f"site{i}", config.replace(seed=config.seed + i)) for i in range(count)]


class SiteActor:
    """One site in its Ray actor (async: polls that wait do not hold a thread). The engine
    thread runs the model; the actor's event loop answers the front door."""

    def __init__(self, name: str, config: ServiceConfig):
        self.name, self.config = name, config
        self.engine = self.face = None

    async def start(self) -> dict:
        from edgediff.service.engine import EdgeEngine

        engine = await asyncio.to_thread(EdgeEngine, self.config, site=self.name)
        engine.start(asyncio.get_running_loop())
        self.engine, self.face = engine, EngineFace(engine)
        return {"pid": os.getpid(), **engine.load()}

    async def submit(self, body: SubmitRequest, tenant: str | None) -> tuple[Answer, dict]:
        return await self.face.submit(body, tenant), self.engine.load()

    async def status(self, job_id: str, tenant, wait: float, until: str) -> Answer:
        return await self.face.status(job_id, tenant, wait, until)

    async def latent(self, job_id: str, tenant, wait: float) -> Answer:
        return await self.face.latent(job_id, tenant, wait)

    async def poll(self, open_ids: list[tuple[str, str | None]]) -> tuple[dict, dict]:
        """The site's load and the terminal statuses among ``open_ids`` (``(id, tenant)``)."""
        finished = {}
        for job_id, tenant in open_ids:
            job = self.engine.get(job_id, tenant)
            if job is not None and job.terminal:
                finished[job_id] = job.to_status()
        return self.engine.load(), finished

    async def measured(self, job_id: str, tenant, latency_s: float) -> Answer:
        return await self.face.measured(job_id, tenant, latency_s)

    async def info(self, tenant=None) -> dict:
        return await self.face.info(tenant)

    async def status_data(self, tenant=None) -> dict:
        return await self.face.status_data(tenant)

    async def metrics(self) -> bytes:
        return await self.face.metrics()

    async def stop(self) -> None:
        await asyncio.to_thread(self.engine.stop)


@dataclass
class _Site:
    """The front door's view of one site."""

    spec: SiteSpec
    handle: object
    pid: int
    load: dict
    seen_at: float  # time.monotonic() of ``load``
    up: bool = True  # routed to
    lost: str | None = None  # why the actor is gone for good
    open: dict = field(default_factory=dict)  # id -> (tenant, last status) of requests not seen terminal
    sending: int = 0  # requests routed here whose submit has not answered yet (not in ``load``)

    @property
    def name(self) -> str:
        return self.spec.name


class FrontDoor:
    """The front door's answers (the face :func:`edgediff.service.app.add_routes` calls):
    routing, forwarding, health and the per-site views. ``start`` deploys the sites."""

    def __init__(self, config: ServiceConfig, sites: Sequence[SiteSpec], address: str, health_s: float = HEALTH_S):
        names = [s.name for s in sites]
        if len(set(names)) != len(names) or not names:
            raise ClusterError(f"site names must be distinct and at least one, got {names}")
        if not (health_s > 0 and math.isfinite(health_s)):
            raise ClusterError(f"health interval must be > 0 s, got {health_s}")
        self.config, self.specs, self.address, self.health_s = config, list(sites), address, health_s
        self.sites: dict[str, _Site] = {}
        self.final: OrderedDict[str, tuple[str | None, dict]] = OrderedDict()  # id -> (tenant, terminal status)
        self.closing = False
        self._health: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._uncollected: set[str] = set()  # ids unfinished at the drain, whose end no client has seen
        from edgediff.service.metrics import FrontMetrics

        self.metrics_ = FrontMetrics(names)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Connect to the cluster, place one actor per site, wait until each is loaded."""
        from edgediff.parallel import SweepError, connect_ray

        try:
            ray = connect_ray(self.address)
        except SweepError as err:
            raise ClusterError(str(err)) from None
        actor = ray.remote(SiteActor)
        handles = {
            spec.name: actor.options(max_restarts=0, max_concurrency=1000, **spec.resources).remote(
                spec.name, spec.config
            )
            for spec in self.specs
        }
        starts = {name: handle.start.remote() for name, handle in handles.items()}
        try:
            ready = dict(zip(starts, ray.get(list(starts.values()), timeout=START_TIMEOUT_S)))
        except ray.exceptions.GetTimeoutError:
            for handle in handles.values():
                ray.kill(handle)
            wanted = {s.name: s.resources for s in self.specs}
            raise ClusterError(
                f"the sites were not ready within {START_TIMEOUT_S:.0f} s; does the cluster have room for {wanted}?"
            ) from None
        now = time.monotonic()
        for spec in self.specs:
            info = ready[spec.name]
            self.sites[spec.name] = _Site(spec, handles[spec.name], info.pop("pid"), info, now)
            self.metrics_.up.labels(spec.name).set(1)
            log.info("site %s ready (pid %d): L(b) = %.4g b + %.4g s", spec.name, self.sites[spec.name].pid,
                     info["k"], info["h"])  # fmt: skip

    async def run_health(self) -> None:
        """Poll every site every ``health_s`` seconds (until cancelled)."""
        while True:
            tick = time.monotonic()
            await asyncio.gather(*(self._poll(s) for s in self.sites.values() if s.lost is None))
            await asyncio.sleep(max(0.0, self.health_s - (time.monotonic() - tick)))

    async def _poll(self, site: _Site) -> None:
        import ray

        open_ids = [(job_id, tenant) for job_id, (tenant, _) in site.open.items()]
        try:
            load, finished = await asyncio.wait_for(_awaitable(site.handle.poll.remote(open_ids)), self.health_s)
        except asyncio.TimeoutError:
            self._set_up(site, False, f"no answer within {self.health_s} s")
            return
        except ray.exceptions.RayActorError as err:
            self._lose(site, err)
            return
        except Exception as err:  # a poll that fails otherwise: out of routing until one succeeds
            log.exception("site %s: health poll failed", site.name)
            self._set_up(site, False, f"poll failed: {type(err).__name__}")
            return
        site.load, site.seen_at = load, time.monotonic()
        self._set_up(site, not load["closing"], "draining")
        for job_id, status in finished.items():
            self._settle(site, job_id, status)

    def _set_up(self, site: _Site, up: bool, why: str) -> None:
        if site.up != up:
            log.warning("site %s %s", site.name, "back in routing" if up else f"out of routing: {why}")
        site.up = up
        self.metrics_.up.labels(site.name).set(int(up))

    def _lose(self, site: _Site, err: BaseException) -> None:
        """The site's actor is gone: out of routing for good; its open requests fail."""
        if site.lost is not None:
            return
        site.lost = f"site {site.name} lost: its actor (pid {site.pid}) died"
        log.error("%s (%s); failing its %d unfinished request(s)", site.lost, type(err).__name__, len(site.open))
        self._set_up(site, False, site.lost)
        for job_id, (tenant, status) in list(site.open.items()):
            self._remember(job_id, tenant, {**status, "status": "failed", "reason": site.lost})
            self.metrics_.lost.labels(site.name).inc()
        site.open.clear()

    def _settle(self, site: _Site, job_id: str, status: dict) -> None:
        """``job_id`` reached ``status`` (terminal) at its site."""
        entry = site.open.pop(job_id, None)
        if entry is not None:
            self._remember(job_id, entry[0], status)

    def _remember(self, job_id: str, tenant, status: dict) -> None:
        self.final[job_id] = (tenant, status)
        self.final.move_to_end(job_id)
        while len(self.final) > self.config.record_limit:
            self.final.popitem(last=False)

    def stop(self) -> None:
        """Stop accepting and drain every site (from any thread but the front door's loop;
        ``edgediff.service.server`` calls it at shutdown, with the listener up)."""
        if self._loop is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self.drain(), self._loop).result()
        else:
            self.closing = True

    def abort(self) -> None:
        """A second signal: stop the sites now (their unfinished requests are lost with them)."""
        import ray

        self.closing = True
        for site in self.sites.values():
            ray.kill(site.handle)

    def wait_collected(self, timeout: float) -> int:
        """After :meth:`stop`: wait up to ``timeout`` s until the clients of the requests that
        were unfinished when the drain began have been answered a terminal state; returns
        how many have not."""
        deadline = time.monotonic() + timeout
        while self._uncollected and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self._uncollected)

    async def drain(self) -> None:
        """Stop accepting, drain every site (each runs its batch to empty) and mirror the last
        terminal states; the actors die with this process."""
        import ray

        if self.closing:
            return
        self.closing = True
        self._uncollected = {job_id for site in self.sites.values() for job_id in site.open}
        if self._health is not None:
            self._health.cancel()
        live = [s for s in self.sites.values() if s.lost is None]
        results = await asyncio.gather(*(_awaitable(s.handle.stop.remote()) for s in live), return_exceptions=True)
        for site, result in zip(live, results):
            if isinstance(result, ray.exceptions.RayActorError):
                self._lose(site, result)
        await asyncio.gather(*(self._poll(s) for s in live if s.lost is None))

    # ------------------------------------------------------------------ routing
    def route(self, steps: int) -> _Site | None:
        """The up site of least expected latency for a request of ``steps`` steps (None: no
        site is up). A site's wait is its last reported time to the next window end, moved
        on by the time since the report (window by window); its queue counts the requests
        routed there whose submit has not answered yet, its batch each running member's
        edge steps left (:mod:`edgediff.service.routing`)."""
        up = [s for s in self.sites.values() if s.up and s.lost is None]
        if not up:
            return None
        now = time.monotonic()
        keys = ("queued", "members", "next_window_s", "window_s", "k", "h", "gpus", "queue_limit", "n_hat_fraction")
        load = {key: np.array([s.load[key] for s in up], float) for key in keys}
        age = np.array([now - s.seen_at for s in up])
        late = age - load["next_window_s"]  # > 0: that window end has passed
        wait = np.where(late > 0, (-late) % load["window_s"], -late)
        offloaded = steps - np.minimum(steps, np.round(load["n_hat_fraction"] * steps))
        work = [
            s.load["members"] * m if "running_steps" not in s.load else running_work(s.load["running_steps"], m)
            for s, m in zip(up, offloaded)
        ]
        queued = load["queued"] + np.array([s.sending for s in up])
        scale = np.array([s.load.get("step_scale", 1.0) for s in up], float)  # the profile the site decides with
        k_g = scale * load["k"] / load["gpus"]
        index = least_expected_latency(
            wait, offloaded, k_g, scale * load["h"], load["members"], queued, load["queue_limit"], work
        )
        return up[index]

    # ------------------------------------------------------------------ the routes' answers
    async def submit(self, body: SubmitRequest, tenant: str | None) -> Answer:
        import ray

        retry = {"Retry-After": str(max(1, math.ceil(self.health_s)))}
        if self.closing:
            return Answer(503, {"error": "the service is shutting down"}, retry)
        if body.site is not None and body.site not in self.sites:
            return Answer(422, {"error": f"body.site: unknown site {body.site!r} (sites: {', '.join(self.sites)})"})
        while True:
            site = self.sites[body.site] if body.site is not None else self.route(body.steps)
            if site is None:
                return Answer(503, {"error": "no site is up"}, retry)
            if not site.up:
                why = site.lost or "not answering its health polls"
                return Answer(503, {"error": f"site {site.name} is down ({why})"}, retry)
            site.sending += body.images
            try:  # a request's images go to one site, whose engine takes them all or none
                answer, load = await _awaitable(site.handle.submit.remote(body, tenant))
            except ray.exceptions.RayActorError as err:  # died since the last poll: route again
                self._lose(site, err)
                continue
            finally:
                site.sending -= body.images
            site.load, site.seen_at = load, time.monotonic()
            if answer.status_code == 202:
                status = {key: value for key, value in answer.content.items() if key != "ids"}
                for job_id in answer.content.get("ids", [status["id"]]):  # each image is a request of its own
                    site.open[job_id] = (tenant, {**status, "id": job_id})
                    self.metrics_.routed.labels(site.name).inc()
            return answer

    def _site_of(self, job_id: str) -> _Site | None:
        return self.sites.get(job_id.partition("-")[0])

    def _final(self, job_id: str, tenant) -> dict | None:
        entry = self.final.get(job_id)
        if entry is None or (self.config.api_keys is not None and entry[0] != tenant):
            return None
        return entry[1]

    async def status(self, job_id: str, tenant, wait: float, until: str) -> Answer:
        return await self._forward(job_id, tenant, "status", wait, until)

    async def latent(self, job_id: str, tenant, wait: float) -> Answer:
        return await self._forward(job_id, tenant, "latent", wait)

    async def measured(self, job_id: str, tenant, latency_s: float) -> Answer:
        site = self._site_of(job_id)
        if site is not None and site.lost is not None and self._final(job_id, tenant) is not None:
            return Answer(409, {"error": f"{site.lost}; request {job_id!r} cannot take a report"})
        return await self._forward(job_id, tenant, "measured", latency_s)

    async def _forward(self, job_id: str, tenant, call: str, *args) -> Answer:
        import ray

        site = self._site_of(job_id)
        if site is None:
            return unknown_id(job_id)
        if site.lost is None:
            try:
                answer = await _awaitable(getattr(site.handle, call).remote(job_id, tenant, *args))
            except ray.exceptions.RayActorError as err:
                self._lose(site, err)
            else:
                terminal = answer.status_code == 200 or (answer.status_code == 409 and isinstance(answer.content, dict))
                if terminal and (not isinstance(answer.content, dict) or answer.content["status"] in TERMINAL):
                    self._uncollected.discard(job_id)
                if answer.status_code == 200 and isinstance(answer.content, dict):
                    if answer.content["status"] in TERMINAL:
                        self._settle(site, job_id, answer.content)
                elif answer.status_code in (200, 409) and job_id in site.open:  # a latent, or a terminal status
                    status = answer.content if isinstance(answer.content, dict) else {
                        **site.open[job_id][1], "status": "done", "split": int(answer.headers["X-Edgediff-Split"])
                    }  # fmt: skip
                    self._settle(site, job_id, status)
                return answer
        status = self._final(job_id, tenant)  # the site is gone: its requests' last answers
        if status is None:
            return unknown_id(job_id)
        self._uncollected.discard(job_id)
        if call == "latent":
            if status["status"] == "done":
                return Answer(410, {"error": f"{site.lost}; the latent of {job_id!r} is gone"})
            return Answer(409, status)
        return Answer(200, status)

    async def info(self, tenant: str | None) -> dict:
        infos = await self._each("info", tenant)
        return {
            "front_door": {"health_interval_s": self.health_s, "routing": "least expected latency"},
            "sites": {name: self._view(name, tenant, info=infos.get(name)) for name in self.sites},
        }

    async def status_data(self, tenant: str | None) -> dict:
        return {"sites": {name: self._view(name, tenant) for name in self.sites}}

    async def site_status(self, name: str, tenant: str | None = None) -> dict | None:
        """The status page data of site ``name`` as ``tenant`` sees it (None: no such site or it is gone)."""
        site = self.sites.get(name)
        if site is None or site.lost is not None:
            return None
        return await _awaitable(site.handle.status_data.remote(tenant))

    def _view(self, name: str, tenant: str | None = None, **extra) -> dict:
        """A site as the front door sees it; a tenant's view leaves out its load and open
        requests (every tenant's)."""
        from edgediff.service.tenants import OPERATOR

        site = self.sites[name]
        if self.config.api_keys is not None and tenant != OPERATOR:
            return {"up": site.up, "lost": site.lost, **extra}
        return {"up": site.up, "lost": site.lost, "pid": site.pid, "open": len(site.open), "load": site.load, **extra}

    async def _each(self, call: str, *args) -> dict:
        """``call`` on every live site, ``None`` for one that fails."""
        live = [s for s in self.sites.values() if s.lost is None]
        results = await asyncio.gather(*(_awaitable(getattr(s.handle, call).remote(*args)) for s in live),
                                       return_exceptions=True)  # fmt: skip
        return {s.name: None if isinstance(r, BaseException) else r for s, r in zip(live, results)}

    async def health(self) -> Answer:
        up = {name: site.up for name, site in self.sites.items()}
        if self.closing or not any(up.values()):
            return Answer(503, {"status": "draining" if self.closing else "no site is up", "sites": up})
        return Answer(200, {"status": "ok", "sites": up})

    async def metrics(self) -> bytes:
        return self.metrics_.render(await self._each("metrics"))


def _awaitable(ref):
    """A Ray ``ObjectRef`` as an asyncio future (awaitable, cancellable by ``wait_for``)."""
    return asyncio.wrap_future(ref.future())


FRONT_PAGE = files("edgediff.service").joinpath("front.html").read_text(encoding="utf-8")  # lists the sites


def create_front_app(front: FrontDoor):
    """The front door's FastAPI app: the service's routes (``/`` lists the sites), plus each
    site's own status page at ``/sites/<name>/``. Its lifespan deploys and drains the sites."""
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    from edgediff import __version__
    from edgediff.service.app import STATUS_PAGE, add_routes

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if not front.sites:  # not deployed yet (serve_front deploys first, to fail in one line)
            await asyncio.to_thread(front.start)
        front._loop = asyncio.get_running_loop()
        front._health = asyncio.create_task(front.run_health())
        try:
            yield
        finally:
            await front.drain()  # already done unless the listener was closed first

    app = FastAPI(
        title="edgediff front door",
        version=__version__,
        description="Several edge sites behind one front door: the edge service's API; "
        "a request may name its site, else it goes to the site of least expected latency.",
        lifespan=lifespan,
    )
    app.state.front = front
    api_key = get_args(add_routes(app, front, front.config, FRONT_PAGE))[1]  # Depends(): this module's
    # annotations are strings, so the Annotated dependency is given as a default

    @app.get("/sites/{name}/", response_class=HTMLResponse, include_in_schema=False)
    async def site_page(name: str):
        return HTMLResponse(STATUS_PAGE)

    @app.get("/sites/{name}/v1/status", include_in_schema=False)
    async def site_status(name: str, tenant: str | None = api_key):
        data = await front.site_status(name, tenant)
        if data is None:
            return Answer(404, {"error": f"no live site {name!r}"}).response()
        return data

    return app


def serve_front(front: FrontDoor, sock) -> None:
    """Run the front door in the foreground on ``sock`` (from :func:`edgediff.service.server.bind`)
    until SIGINT/SIGTERM, with a single site's shutdown order (the sites drain while the
    listener answers, then clients collect for up to ``linger_s``)."""
    from edgediff.service.server import serve

    front.start()  # ClusterError (one line) before the listener answers
    serve(front, sock=sock, app=create_front_app(front))


def front_door_thread(front: FrontDoor):
    """The front door as a :class:`edgediff.service.server.ServiceThread` (tests, bench)::

    with front_door_thread(front) as door:
        EdgeClient(door.url) ...
    """
    from edgediff.service.server import ServiceThread

    return ServiceThread(front, app=create_front_app(front))
