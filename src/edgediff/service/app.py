"""The HTTP face of the edge (FastAPI): routes, validation errors, the body-size limit.

Routes (OpenAPI schema at ``/openapi.json``, docs at ``/docs``):

* ``POST /v1/requests`` -> 202 with the request's status (``queued``) and ``ids`` (one
  request id per image of ``images``, each a request of its own); 422 naming the field
  of a bad body (strict types, duplicate keys, steps the model cannot run), 400 for a body
  that is not JSON, 413 for a body over the limit, 503 + ``Retry-After`` when the queue is
  full or the service is draining.
* ``GET /v1/requests/{id}?wait=S&until=decided|finished`` -> the status, after waiting up to
  ``S`` seconds for the decision or the end.
* ``GET /v1/requests/{id}/latent?wait=S`` -> the intermediate latent (safetensors payload,
  ``application/octet-stream``) once ``done``; 409 when denied (run locally) or failed; 202
  with the status if it is not ready within ``S`` seconds.
* ``GET /v1/info`` (model, profile, policy, cache, counters), ``GET|HEAD /healthz``,
  ``GET /metrics`` (Prometheus text format).
* ``GET /`` the live status page (self-contained HTML; it polls ``GET /v1/status``).

With API keys (``ServiceConfig.api_keys``) every ``/v1/`` route needs one (401 otherwise),
a tenant sees only itself (another tenant's id is 404, as an unknown one; ``/v1/info`` and
``/v1/status`` count only its own requests), a tenant over its quota gets 429 +
``Retry-After``, and ``/metrics`` needs an operator key (docs/service.md, "Tenants").
"""

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Annotated, Literal, get_args

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgediff import __version__
from edgediff.runtime.request import RequestError
from edgediff.service.config import ServiceConfig
from edgediff.service.engine import EdgeEngine
from edgediff.service.face import Answer, Face
from edgediff.service.job import QueueFull, ShuttingDown
from edgediff.service.schemas import ErrorBody, JobStatus, MeasuredLatency, SubmitRequest, Submitted
from edgediff.service.tenants import OPERATOR, OverQuota, digest, presented_key

log = logging.getLogger(__name__)

STATUS_PAGE = files("edgediff.service").joinpath("status.html").read_text(encoding="utf-8")

_ERRORS = {
    401: {"model": ErrorBody, "description": "API keys are on and no valid key was presented"},
    403: {"model": ErrorBody, "description": "the operator key, where a tenant's key is needed"},
    404: {"model": ErrorBody, "description": "unknown request id (or another tenant's)"},
    422: {"model": ErrorBody, "description": "invalid input; the message names the field"},
}


def describe_validation(errors) -> str:
    """One line naming the first bad field, e.g. ``body.alpha: Input should be greater than 0``."""
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{where}: {message}"


class _Pairs(list):
    """A JSON object's ``(key, value)`` pairs in order, duplicates kept (see :func:`json_error`)."""


def json_error(body: bytes) -> tuple[int, str] | None:
    """``(400, why)`` for a body that is not JSON, ``(422, "body.<path>: duplicate key")`` for
    an object with a key twice (``json`` would keep the last one silently), else ``None``."""
    try:
        document = json.loads(body, object_pairs_hook=_Pairs)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return 400, f"body is not valid JSON: {err}"
    stack = [(document, "body")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Pairs):
            seen = set()
            for key, value in node:
                if key in seen:
                    return 422, f"{path}.{key}: duplicate key"
                seen.add(key)
                stack.append((value, f"{path}.{key}"))
        elif isinstance(node, list):
            stack.extend((value, f"{path}.{i}") for i, value in enumerate(node))
    return None


class BodyLimit:
    """Reads a POST/PUT/PATCH body up to ``max_bytes`` before the app sees it: larger bodies
    get 413 (the declared Content-Length is checked first), a client that disconnects
    mid-body is dropped without reaching the app, a body that is not JSON gets 400 and one
    with a duplicate key 422 (:func:`json_error`)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._reject(scope, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                log.info("client disconnected while sending its body")
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self._reject(scope, send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False
        error = json_error(body) if body else None
        if error is not None:
            response = JSONResponse({"error": error[1]}, status_code=error[0])
            return await response(scope, receive, send)

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope, send):
        response = JSONResponse({"error": f"request body is larger than {self.max_bytes} bytes"}, status_code=413)
        await response(scope, None, send)


async def _wait(event: asyncio.Event | None, seconds: float) -> None:
    if event is None or seconds <= 0 or event.is_set():
        return
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:
        pass


class EngineFace:
    """The routes' answers from one :class:`EdgeEngine` in this process (``create_app``; a
    site actor of :mod:`edgediff.service.cluster` runs the same class behind a front door)."""

    def __init__(self, engine: EdgeEngine):
        self.engine = engine

    async def submit(self, body: SubmitRequest, tenant: str | None) -> Answer:
        """202 with the first image's status and ``ids`` (every image's job, all accepted),
        503 + ``Retry-After`` (queue full, draining), 429 (over quota), 422 for steps the model
        cannot run, a site that is not this one or more images than could ever be queued."""
        engine = self.engine
        try:
            if engine.config.journal is not None and engine.config.journal_fsync:  # fsync off the event loop
                jobs = await asyncio.to_thread(engine.submit_images, body, tenant)
            else:
                jobs = engine.submit_images(body, tenant)
        except QueueFull as err:
            return Answer(503, {"error": str(err)}, {"Retry-After": str(err.retry_after)})
        except OverQuota as err:
            return Answer(429, {"error": str(err)}, {"Retry-After": str(err.retry_after)})
        except ShuttingDown as err:
            return Answer(503, {"error": str(err)}, {"Retry-After": str(max(1, round(engine.config.window_s)))})
        except RequestError as err:  # valid JSON, but not for this model (e.g. steps its scheduler cannot run)
            return Answer(422, {"error": f"body.{err}"})
        first = jobs[0]
        return Answer(
            202, {**first.to_status(), "ids": [job.id for job in jobs]}, {"Location": f"/v1/requests/{first.id}"}
        )

    async def status(self, job_id: str, tenant: str | None, wait: float, until: str) -> Answer:
        """The status after waiting up to ``wait`` s for the decision or the end; 404 if unknown."""
        job = self.engine.get(job_id, tenant)
        if job is None:
            return unknown_id(job_id)
        await _wait(job.async_decided if until == "decided" else job.async_finished, wait)
        status = job.to_status()
        if status["status"] in ("denied", "failed") and tenant != OPERATOR:  # the answer is the status itself
            job.collected = True
        return Answer(200, status)

    async def latent(self, job_id: str, tenant: str | None, wait: float) -> Answer:
        """The payload once ``done``; 409 with the status when denied or failed, 202 with it
        when not ready within ``wait`` s; 404 if unknown."""
        job = self.engine.get(job_id, tenant)
        if job is None:
            return unknown_id(job_id)
        await _wait(job.async_finished, wait)
        snap = job.snapshot  # one consistent state: the engine replaces it whole
        job.collected = job.collected or snap.terminal
        if snap.status == "done" and snap.payload is not None:
            headers = {"X-Edgediff-Split": str(snap.split), "X-Edgediff-Cache-Hit-Step": str(snap.cache_hit_step)}
            return Answer(200, snap.payload, headers)
        return Answer(409 if snap.terminal else 202, snap.to_status())

    async def measured(self, job_id: str, tenant: str | None, latency_s: float) -> Answer:
        """The device's total latency for a request the edge finished: 200 with the status;
        404 if unknown, 409 if not finished at the edge or already reported."""
        taken = self.engine.measured(job_id, latency_s, tenant)
        if taken is None:
            return unknown_id(job_id)
        if not taken:
            return Answer(409, {"error": f"request {job_id!r} was not finished at the edge, or was already reported"})
        return Answer(200, self.engine.get(job_id, tenant).to_status())

    async def info(self, tenant: str | None) -> dict:
        return self.engine.info(tenant)

    async def status_data(self, tenant: str | None) -> dict:
        engine = self.engine
        return engine.board.snapshot(engine, thumbnails=engine.config.api_keys is None, tenant=tenant)

    async def health(self) -> Answer:
        if self.engine.closing:
            return Answer(503, {"status": "draining"})
        if self.engine.config.api_keys is not None:  # unauthenticated: the queue is every tenant's
            return Answer(200, {"status": "ok"})
        return Answer(200, {"status": "ok", "queued": self.engine.queue_state()[0]})

    async def metrics(self) -> bytes:
        engine = self.engine
        used, entries = engine.caches.usage()
        engine.metrics.cache_bytes.set(used)
        engine.metrics.cache_entries.set(entries)
        engine.live_gpus()  # counts out a worker that died since the last step
        return engine.metrics.render()


def unknown_id(job_id: str) -> Answer:
    return Answer(404, {"error": f"unknown request id {job_id!r}"})


def install_common(app: FastAPI, config: ServiceConfig):
    """What every face of the service shares (a site's app here, the front door's in
    :mod:`edgediff.service.cluster`): the body limit, the error bodies (``{"error": ...}``,
    a 422 naming the field) and the API-key check. Returns the ``Tenant`` dependency: the
    tenant of the request's key (None when keys are off; :data:`OPERATOR` for an operator
    key), 401 without a valid one."""
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    keys = dict(config.api_keys or ())
    keys.update(dict.fromkeys(config.operator_keys, OPERATOR))

    def tenant_of(request: Request) -> str | None:
        if not keys:
            return None
        key = presented_key(request.headers)
        tenant = None if key is None else keys.get(digest(key))
        if tenant is None:
            detail = "missing API key" if key is None else "unknown API key"
            raise HTTPException(401, f"{detail} (Authorization: Bearer KEY)", {"WWW-Authenticate": "Bearer"})
        return tenant

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        return JSONResponse({"error": describe_validation(exc.errors())}, status_code=422)

    return Annotated[str | None, Depends(tenant_of)]


def create_app(engine: EdgeEngine) -> FastAPI:
    """The FastAPI app; its lifespan starts the engine's threads and drains it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(engine.start, loop)
        try:
            yield
        finally:
            log.info("draining the edge")
            await asyncio.to_thread(engine.stop)

    app = FastAPI(
        title="edgediff edge service",
        version=__version__,
        description="Edge-device collaborative diffusion serving: submit a request, "
        "receive the decision and the intermediate latent, finish the denoising on the device.",
        lifespan=lifespan,
    )
    app.state.engine = engine
    add_routes(app, EngineFace(engine), engine.config, STATUS_PAGE)
    return app


def add_routes(app: FastAPI, face: Face, config: ServiceConfig, page: str):
    """The service's routes (module docstring) answered by ``face`` (an :class:`EngineFace`,
    or the front door of :mod:`edgediff.service.cluster`); ``page`` is the HTML at ``/``.
    Returns the ``Tenant`` dependency (:func:`install_common`) for further routes."""
    max_wait = config.max_wait_s
    Tenant = install_common(app, config)
    tenant_dependency = get_args(Tenant)[1].dependency

    @app.post(
        "/v1/requests",
        status_code=202,
        response_model=Submitted,
        responses={
            **_ERRORS,
            400: {"model": ErrorBody, "description": "body is not decodable"},
            413: {"model": ErrorBody, "description": "body too large"},
            429: {"model": ErrorBody, "description": "the tenant is over its quota (see Retry-After)"},
            503: {"model": ErrorBody, "description": "queue full or draining (see Retry-After)"},
        },
    )
    async def submit(body: SubmitRequest, tenant: Tenant):
        """Queue a request for the next window (``images`` = n: n requests of seeds ``seed`` ..
        ``seed + n - 1``, all accepted or none; ``ids`` lists them); each answer comes with
        ``GET /v1/requests/{id}``."""
        if tenant == OPERATOR:
            raise HTTPException(403, "the operator key submits no requests: use a tenant's key")
        return (await face.submit(body, tenant)).response()

    @app.get("/v1/requests/{job_id}", response_model=JobStatus, responses=_ERRORS)
    async def status(
        job_id: str,
        tenant: Tenant,
        wait: Annotated[float, Query(ge=0, le=max_wait, allow_inf_nan=False)] = 0.0,
        until: Literal["decided", "finished"] = "finished",
    ):
        """The request's status, after waiting up to ``wait`` seconds for its decision or its end."""
        return (await face.status(job_id, tenant, wait, until)).response()

    @app.get(
        "/v1/requests/{job_id}/latent",
        response_class=Response,
        responses={
            **_ERRORS,
            200: {"content": {"application/octet-stream": {}}, "description": "safetensors latent payload"},
            202: {"model": JobStatus, "description": "not ready yet"},
            409: {"model": JobStatus, "description": "denied (run locally) or failed"},
        },
    )
    async def latent(
        job_id: str, tenant: Tenant, wait: Annotated[float, Query(ge=0, le=max_wait, allow_inf_nan=False)] = 0.0
    ):
        """The intermediate latent of a granted request, once the edge has run its steps."""
        if tenant == OPERATOR:  # the operator sees every request's status, not tenants' content
            raise HTTPException(403, "the operator key fetches no latents: use the tenant's key")
        return (await face.latent(job_id, tenant, wait)).response()

    @app.post(
        "/v1/requests/{job_id}/measured",
        response_model=JobStatus,
        responses={
            **_ERRORS,
            400: {"model": ErrorBody, "description": "body is not decodable"},
            409: {"model": ErrorBody, "description": "not done at the edge, or already reported"},
            413: {"model": ErrorBody, "description": "body too large"},
        },
    )
    async def measured(job_id: str, body: MeasuredLatency, tenant: Tenant):
        """The device reports the request's total latency (submit to decoded image), once: the
        prediction's error is then measured end to end (``/metrics``, the status page)."""
        return (await face.measured(job_id, tenant, body.latency_s)).response()

    @app.get("/v1/info", responses={401: _ERRORS[401]})
    async def info(tenant: Tenant):
        """Model, edge profile, policy, window, cache and counters (a tenant's own; the
        operator's: the whole edge and every tenant's)."""
        return await face.info(tenant)

    @app.get("/", response_class=HTMLResponse)
    async def status_page():
        """The live status page (HTML, no external assets; refreshes itself from ``/v1/status``)."""
        return HTMLResponse(page)

    @app.get("/v1/status", responses={401: _ERRORS[401]})
    async def status_data(tenant: Tenant):
        """The status page's data: recent windows, occupancy, queue, cache, latency, thumbnails
        (with API keys: a tenant's own part of them, the operator's: the whole edge; no
        thumbnails, which are tenants' content)."""
        return await face.status_data(tenant)

    @app.get("/healthz", responses={503: {"description": "draining"}})
    async def healthz():
        """``ok`` while accepting requests; 503 ``draining`` during shutdown."""
        return (await face.health()).response()

    # HEAD answers as GET does; one route per method keeps OpenAPI's operation ids unique
    app.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, 401: _ERRORS[401], 403: _ERRORS[403]},
    )
    async def metrics(request: Request):
        """Prometheus metrics, names prefixed ``edgediff_`` (with API keys: the operator key's;
        request counters and latencies then carry a ``tenant`` label)."""
        if config.api_keys is not None:
            caller = tenant_dependency(request)
            if caller != OPERATOR:
                raise HTTPException(403, "/metrics needs the operator key (@operator in the keys file)")
        return Response(await face.metrics(), media_type=CONTENT_TYPE_LATEST)

    return Tenant
