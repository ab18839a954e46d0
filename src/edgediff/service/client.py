"""The device side: submit a request to the edge, receive the decision and the latent, finish
the remaining steps with the device's own model.

``EdgeClient`` is the HTTP API in Python (httpx; retries a 503 after its ``Retry-After``);
``generate_remote`` is the whole round trip (``generate_remote_images``: several images of
one prompt in one request), what ``edgediff generate --server URL`` runs.
A denied request ("run locally"), or one the edge failed, is generated entirely on the
device from the same seed, so the user always gets an image.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import httpx

from edgediff.errors import WaitTimeout

log = logging.getLogger(__name__)

LONG_POLL_S = 20.0
# GenerationRequest fields beyond the prompt, steps, seed and guidance that a request sends
GENERATION_OPTIONS = ("width", "height", "eta", "guidance_rescale", "clip_skip", "scheduler", "scheduler_options")


class ServiceError(RuntimeError):
    """The service refused a request (4xx) or could not be reached; the message says why."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class ServiceTimeout(ServiceError, WaitTimeout):
    """The edge service did not answer within the time allowed (``edgediff`` exit code 4)."""


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text.strip() or response.reason_phrase


class EdgeClient:
    """``EdgeClient(url, api_key=None)``: ``submit``, ``status``, ``wait_decision``,
    ``fetch_latent``. ``api_key`` is sent as ``Authorization: Bearer`` (services with keys)."""

    def __init__(
        self,
        url: str,
        timeout: float = 60.0,
        retries: int = 20,
        max_retry_wait_s: float = 5.0,
        api_key: str | None = None,
    ):
        self.url = url.rstrip("/")
        self.retries, self.max_retry_wait_s = retries, max_retry_wait_s
        headers = {} if api_key is None else {"Authorization": f"Bearer {api_key}"}
        self.http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(timeout + LONG_POLL_S), headers=headers)
        self.rejections = 0  # 503s (queue full) and 429s (over quota) seen, each retried

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> EdgeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TimeoutException as err:
            raise ServiceTimeout(f"the edge service at {self.url} did not answer in time: {err}") from None
        except httpx.HTTPError as err:
            raise ServiceError(f"cannot reach the edge service at {self.url}: {err}") from None

    def submit(
        self,
        prompt: str,
        *,
        alpha: float,
        profile: tuple[float, float] | None = None,
        preset: str | None = None,
        steps: int = 50,
        seed: int = 0,
        guidance_scale: float = 7.5,
        negative_prompt: str = "",
        site: str | None = None,
        images: int = 1,
        **options,
    ) -> dict:
        """Queue a request (behind a front door: at ``site``, else where it routes); returns
        its status (``queued``) and ``ids``: with ``images`` = n, the ids of its n requests,
        seeds ``seed`` .. ``seed + n - 1`` (accepted together or not at all). A full queue
        (503) is retried after ``Retry-After`` up to ``retries`` times; any other refusal
        raises :class:`ServiceError`. ``options``: diffusers' generation options (``width``,
        ``height``, ``eta``, ``guidance_rescale``, ``clip_skip``, ``scheduler``,
        ``scheduler_options``), sent when given."""
        body = {
            "prompt": prompt,
            "steps": steps,
            "seed": seed,
            "alpha": alpha,
            "guidance_scale": guidance_scale,
            "negative_prompt": negative_prompt,
            **{name: value for name, value in options.items() if value not in (None, 0.0, {})},
        }
        if profile is not None:
            body["profile"] = {"k": profile[0], "h": profile[1]}
        if preset is not None:
            body["preset"] = preset
        if site is not None:
            body["site"] = site
        if images != 1:  # one image: the body as before ``images`` existed
            body["images"] = images
        for attempt in range(self.retries + 1):
            response = self._call("POST", "/v1/requests", json=body)
            if response.status_code == 202:
                return response.json()
            if response.status_code in (429, 503) and attempt < self.retries:  # over quota, queue full
                self.rejections += 1
                wait = min(float(response.headers.get("Retry-After", 1)), self.max_retry_wait_s)
                log.info("edge refused (%d: %s); retrying in %.1f s", response.status_code, _error_text(response), wait)
                time.sleep(wait)
                continue
            raise ServiceError(f"edge refused the request: {_error_text(response)}", response.status_code)
        raise AssertionError("unreachable")

    def info(self) -> dict:
        """``GET /v1/info``: the edge's model, its latent space, policy and counters."""
        response = self._call("GET", "/v1/info")
        if response.status_code != 200:
            raise ServiceError(_error_text(response), response.status_code)
        return response.json()

    def status(self, job_id: str, wait: float = 0.0, until: str = "finished") -> dict:
        response = self._call("GET", f"/v1/requests/{job_id}", params={"wait": wait, "until": until})
        if response.status_code != 200:
            raise ServiceError(_error_text(response), response.status_code)
        return response.json()

    def wait_decision(self, job_id: str, timeout: float = 120.0, allowed: float | None = None) -> dict:
        """Long-poll until the edge has decided (or failed) the request; a timeout names
        ``allowed`` (default ``timeout``: the part left of a longer wait names the whole)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            status = self.status(job_id, wait=max(0.0, min(LONG_POLL_S, remaining)), until="decided")
            if status["status"] != "queued":
                return status
            if remaining <= 0:
                raise ServiceTimeout(f"no decision for request {job_id} within {allowed or timeout:g} s")

    def report_latency(self, job_id: str, latency_s: float) -> dict:
        """Tell the edge what this device measured (submit to decoded image), once per request:
        the edge measures its prediction's error end to end. Returns the request's status."""
        response = self._call("POST", f"/v1/requests/{job_id}/measured", json={"latency_s": latency_s})
        if response.status_code != 200:
            raise ServiceError(_error_text(response), response.status_code)
        return response.json()

    def fetch_latent(
        self, job_id: str, timeout: float = 300.0, allowed: float | None = None
    ) -> tuple[bytes | None, dict | None]:
        """Long-poll for the latent: ``(payload, None)`` when done, ``(None, status)`` when the
        request was denied or failed (the device then runs everything); ``allowed`` as in
        :meth:`wait_decision`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            wait = max(0.0, min(LONG_POLL_S, remaining))
            response = self._call("GET", f"/v1/requests/{job_id}/latent", params={"wait": wait})
            if response.status_code == 200:
                return response.content, None
            if response.status_code == 409:
                return None, response.json()
            if response.status_code != 202:
                raise ServiceError(_error_text(response), response.status_code)
            if remaining <= 0:
                raise ServiceTimeout(f"no latent for request {job_id} within {allowed or timeout:g} s")


def edge_latent_space(info: dict) -> dict | None:
    """The edge's latent-space fingerprint from its ``/v1/info`` (a front door's: its first
    site's that says; ``None`` if none does, e.g. an older edgediff); raises
    :class:`ServiceError` if it is malformed."""
    from edgediff.errors import InputError
    from edgediff.runtime.latent_space import validate

    if not isinstance(info, dict):
        return None
    space = info.get("latent_space")
    if space is None:  # a front door (serve --ray): its sites serve one model; the first that says
        sites = info.get("sites") if isinstance(info.get("sites"), dict) else {}
        found = (view.get("info") for view in sites.values() if isinstance(view, dict))
        space = next((i["latent_space"] for i in found if isinstance(i, dict) and "latent_space" in i), None)
    if space is None:
        return None
    try:
        return validate(space, "the edge's /v1/info latent_space")
    except InputError as err:
        raise ServiceError(str(err)) from None


def load_edge_model(info: dict, device: str = "cpu", loader=None):
    """The edge's own model, loaded here, for a device given no model of its own (the edge's
    model id names a built-in model, or a directory or file this machine has too). Raises
    :class:`~edgediff.runtime.backends.ModelLoadError` in one line when it cannot be loaded:
    finishing with any other model would silently give wrong images."""
    from edgediff.errors import InputError
    from edgediff.runtime.backends import ModelLoadError
    from edgediff.runtime.models import ModelSpec, load_model

    space = edge_latent_space(info)
    source = (space or {}).get("model") or info.get("model")
    if not isinstance(source, str) or not source:
        raise ModelLoadError("--model is needed: the edge does not say which model it serves")
    try:
        return (loader or (lambda src: load_model(ModelSpec(src, device=device))))(source)
    except InputError as err:
        raise ModelLoadError(
            f"--model is needed: the edge serves model {source!r}, which this machine cannot load ({err}); "
            "pass --model with a model of the edge's latent space (`edgediff check-model`)"
        ) from None


def check_edge_model(info: dict, model) -> None:
    """Before submitting: refuse (:class:`~edgediff.runtime.latent_space.LatentSpaceMismatch`,
    one line naming both models) a device ``model`` that cannot finish the edge's latents."""
    from edgediff.runtime.latent_space import check

    space = edge_latent_space(info)
    if space is not None:
        check(space, model)


@dataclass(frozen=True)
class RemoteResult:
    """An image made with the edge's help, the edge's answer and the latency it predicted
    (timeline model) against what the device measured (submit to decoded image)."""

    image: object  # uint8 (H, W, 3)
    status: dict  # the request's final status from the edge
    split: int  # denoiser calls n..1 ran on the device
    steps: int  # N: the schedule's denoiser calls (the unit of split; the request's own steps may be fewer)
    payload_bits: int
    predicted_latency_s: float | None
    measured_latency_s: float
    local_s: float

    @property
    def granted(self) -> bool:
        return self.payload_bits > 0

    @property
    def cache_hit_step(self) -> int:
        return int(self.status.get("cache_hit_step") or 0)


@dataclass(frozen=True)
class EdgeAnswer:
    """What the edge gave: the state to finish from (the edge's latent, or the request's
    noise when denied or failed), the final status, and the wall time since submitting."""

    state: object  # LatentState
    status: dict
    payload_bits: int
    elapsed_s: float


def request_edge(
    client: EdgeClient,
    request,
    model,
    *,
    alpha: float,
    profile: tuple[float, float] | None = None,
    preset: str | None = None,
    timeout: float = 300.0,
) -> EdgeAnswer:
    """Submit ``request`` (a ``GenerationRequest``) and wait for the decision and the latent,
    at most ``timeout`` seconds in all (then :class:`ServiceTimeout`)."""
    return request_edge_images(client, request, model, alpha=alpha, profile=profile, preset=preset, timeout=timeout)[0]


def request_edge_images(
    client: EdgeClient,
    request,
    model,
    *,
    images: int = 1,
    alpha: float,
    profile: tuple[float, float] | None = None,
    preset: str | None = None,
    timeout: float = 300.0,
) -> list[EdgeAnswer]:
    """Submit ``request`` with ``images`` images in one request (seeds ``seed``, ``seed + 1``,
    ... as in-process ``generate --images``; the edge decides each as a request of its own)
    and wait for every image's decision and latent, at most ``timeout`` seconds in all."""
    from edgediff.runtime.split import image_requests

    start = time.perf_counter()
    wanted = image_requests(request, images)
    submitted = client.submit(
        request.prompt,
        alpha=alpha,
        profile=profile,
        preset=preset,
        steps=request.steps,
        seed=request.seed,
        guidance_scale=request.guidance_scale,
        negative_prompt=request.negative_prompt,
        images=images,
        **{name: getattr(request, name) for name in GENERATION_OPTIONS},
    )
    ids = submitted.get("ids", [submitted["id"]])
    if len(ids) != images:
        raise ServiceError(f"the edge accepted {len(ids)} request(s) for {images} images")
    return [_edge_answer(client, job_id, one, model, start, timeout) for job_id, one in zip(ids, wanted)]


def _edge_answer(client: EdgeClient, job_id: str, request, model, start: float, timeout: float) -> EdgeAnswer:
    """Request ``job_id``'s (of ``request``) decision and latent, by ``start + timeout``."""
    from edgediff.runtime.executor import initial_state
    from edgediff.runtime.payload import decode_latent

    def left() -> float:
        return max(0.0, timeout - (time.perf_counter() - start))

    decision = client.wait_decision(job_id, timeout=left(), allowed=timeout)
    payload, final = (None, decision)
    if decision["status"] in ("running", "done"):
        payload, final = client.fetch_latent(job_id, timeout=left(), allowed=timeout)
    if payload is not None:
        final = client.status(job_id)
        state = decode_latent(payload)
        if state.request != request:
            raise ServiceError(f"the edge returned a latent for another request: {state.request}")
    else:
        if final["status"] == "failed":
            log.warning("edge failed request %s (%s); generating locally", job_id, final.get("reason"))
        state = initial_state(model, request)
    bits = 0 if payload is None else 8 * len(payload)
    return EdgeAnswer(state, final, bits, time.perf_counter() - start)


def generate_remote(
    client: EdgeClient,
    request,
    model,
    *,
    alpha: float,
    profile: tuple[float, float] | None = None,
    preset: str | None = None,
    timeout: float = 300.0,
) -> RemoteResult:
    """Submit ``request`` (a ``GenerationRequest``), receive the decision and the latent, finish
    on ``model`` (the device's), decode. Denied or failed at the edge: everything local."""
    return generate_remote_images(client, request, model, alpha=alpha, profile=profile, preset=preset,
                                  timeout=timeout)[0]  # fmt: skip


def generate_remote_images(
    client: EdgeClient,
    request,
    model,
    *,
    images: int = 1,
    alpha: float,
    profile: tuple[float, float] | None = None,
    preset: str | None = None,
    timeout: float = 300.0,
) -> list[RemoteResult]:
    """:func:`generate_remote` for ``images`` images of one prompt, sent as one request (seeds
    ``seed``, ``seed + 1``, ...: the images of in-process ``generate --images``). Every
    image's answer is received first (``timeout`` for all), then each is finished on
    ``model`` in turn. An image's measured latency is its edge answer's wait plus its own
    local steps and decoding: what a device finishing that image alone would see, the
    latency the edge predicted (the images finished before it on this device are not in it)."""
    from edgediff.runtime.split import finish

    answers = request_edge_images(
        client, request, model, images=images, alpha=alpha, profile=profile, preset=preset, timeout=timeout
    )
    results = []
    for answer in answers:
        local_start = time.perf_counter()
        image = finish(model, answer.state)
        local_s = time.perf_counter() - local_start
        measured = answer.elapsed_s + local_s
        if answer.status.get("status") == "done":  # the edge's prediction is checked against what this device saw
            try:
                client.report_latency(answer.status["id"], measured)
            except ServiceError as err:  # a report is a courtesy: the image is made
                log.warning("could not report the measured latency of %s: %s", answer.status["id"], err)
        results.append(
            RemoteResult(
                image=image,
                status=answer.status,
                split=answer.state.split,
                steps=answer.state.steps,
                payload_bits=answer.payload_bits,
                predicted_latency_s=answer.status.get("predicted_latency_s"),
                measured_latency_s=measured,
                local_s=local_s,
            )
        )
    return results


def describe(result: RemoteResult, model) -> str:
    """How ``result``'s image was made, in words: the edge's decision, the device's part, the
    latency predicted and measured (``generate --server`` prints it per image)."""
    st = result.status
    if st["status"] == "done":
        hit = f", cache hit at step {st['cache_hit_step']}" if st["cache_hit_step"] else ""
        hit += f", cache miss: {st['cache_miss']}" if st.get("cache_miss") else ""
        where = f"granted: {st['offloaded_steps']} at the edge{hit}, payload {result.payload_bits} bits"
    elif st["status"] == "denied":
        where = f"denied ({st.get('reason')}): all steps local"
    else:
        where = f"edge failed ({st.get('reason')}): all steps local"
    predicted = result.predicted_latency_s
    return (
        f"({where}; {result.split} local on {model.name}); "
        f"latency predicted {'n/a' if predicted is None else f'{predicted:.2f} s'}, "
        f"measured {result.measured_latency_s:.2f} s (submit to decoded image)"
    )
