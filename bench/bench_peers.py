"""edgediff against what an operator would run instead (issue 31): the same arrival trace, the
same model directory and the same device profiles, through four configurations back to back,
each on the real runtime; the digital twin on the same trace beside them.

1. ``device``: every request runs on its device (NCLDC, the paper's B3); no edge.
2. ``plain``: a FastAPI endpoint calling diffusers' ``StableDiffusionPipeline.__call__`` one
   request at a time (a lock: the pipeline's scheduler is not thread-safe), the whole
   generation on the edge, the PNG returned.
3. ``static``: requests grouped at the end of each ``K``-second window (a request joins the
   window it arrived in; a batch busy at a window's end is followed at once) by step count,
   up to ``B_max`` per batch, each batch one ``StableDiffusionPipeline.__call__`` with a
   list of prompts and one seeded generator per request; the whole generation on the edge.
4. ``edgediff``: the service (:class:`EdgeEngine` behind its FastAPI app): windows, the
   ``exact`` policy's grants and split points, continuous batching at heterogeneous
   timesteps; the cache off (``edgediff``) and on (``edgediff+cache``). ``edgediff-same``
   is the same service doing the peers' work: every request granted with split 0 (policy
   ``b2`` with ``N_hat = 0``, ``B_max`` as the peers'), cache off: the batching mechanism alone.
   Each is the service as shipped: its windows decide with the calibration times the measured
   pace of the recent steps (``profile_from_steps``). ``edgediff-calibrated`` (only when named
   in ``--configs``) is ``edgediff`` deciding with the start-up calibration alone.

Each server runs in its own process (this script with ``--serve``), one torch thread
(``OMP_NUM_THREADS=1``), one at a time; the clients replay the trace open-loop on asyncio
in this process (one connection per request). End-to-end latency is submit to a decoded
image: for the edge's part, measured at the client; for the device's part, scheduled by the
device's profile, the same way for every configuration (the devices are not this host): its
``n`` local steps take ``n L_dev(1)`` and its VAE decode the edge's decode time measured here
times ``L_dev(1) / L_edge(1)``; the link is eq. (3) (prompt up, latent or PNG down; a peer's
answer is counted at ``b = 1``, which favours the peers). Device profiles: the paper's user
rows 3..10 scaled by the ratio of their ``L(1)`` to the paper's edge's, against this host's
calibrated ``L_edge(1)``; α drawn as the paper's generator does. Utility ``α F(n) - L`` with
``F`` the service's PAI curve for the request's ``N`` (``n = 0`` for the peers: they finish
on the edge with the cluster-wide model).

A configuration *breaks* at a load when its queue grows without bound: requests still
unanswered when the run is cut (``--drain`` times the trace's length after its last
arrival), a 503, or latency that keeps rising (the last third's mean over 1.5x the
first third's, and 0.2 s more). Latencies of unanswered requests are counted up to the cut
(so the figures of a broken run are lower bounds, marked ``>``).

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bench_peers.py [--quick] [--model tiny|sd-random|tiny32|DIR]
        [--loads 0.5,1,1.5,3] [--duration 10] [--traces poisson,bursty] [--steps 10,20,30] [--window 0.5] [--bmax 16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import math
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import RawHttp, free_port, running_process  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("device", "plain", "static", "edgediff-same", "edgediff", "edgediff+cache")
OPTIONAL = ("edgediff-calibrated",)  # run when named in --configs
PEERS = ("device", "plain", "static")
GUIDANCE = 7.5  # diffusers' default, the same for every configuration


# ---------------------------------------------------------------------------- the peers' servers
class PeerBody(BaseModel):
    """What a peer's ``POST /generate`` takes."""

    prompt: str
    steps: int
    seed: int


def load_pipeline(model_dir: str):
    """diffusers' own ``StableDiffusionPipeline.from_pretrained`` of the model directory, as
    its documentation shows (no safety checker: the model has none), offline."""
    from diffusers import StableDiffusionPipeline

    from edgediff.runtime.models import quiet_third_party

    with quiet_third_party():
        pipe = StableDiffusionPipeline.from_pretrained(
            model_dir, safety_checker=None, requires_safety_checker=False, local_files_only=True
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def peer_app(model_dir: str, mode: str, window_s: float, b_max: int):
    """The plain (``mode="plain"``) or static-batching server: ``POST /generate`` with
    ``{prompt, steps, seed}`` answers the PNG; ``GET /stats`` the seconds spent in the pipeline."""
    import torch
    from fastapi import FastAPI, Response

    pipe = load_pipeline(model_dir)
    stats = {"busy_s": 0.0, "images": 0, "calls": 0}
    app = FastAPI()

    def png(image) -> bytes:
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()

    def run(bodies: list) -> list:
        start = time.perf_counter()
        images = pipe(
            [b.prompt for b in bodies],
            num_inference_steps=bodies[0].steps,
            guidance_scale=GUIDANCE,
            generator=[torch.Generator("cpu").manual_seed(b.seed) for b in bodies],
        ).images
        stats["busy_s"] += time.perf_counter() - start
        stats["images"] += len(images)
        stats["calls"] += 1
        return images

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    @app.get("/stats")
    async def get_stats() -> dict:  # on the event loop: the plain server's blocked requests can fill the thread pool
        return stats

    if mode == "plain":
        lock = threading.Lock()

        @app.post("/generate")
        def generate(body: PeerBody) -> Response:  # sync: FastAPI runs it in its thread pool
            with lock:  # one request at a time: the pipeline's scheduler is not thread-safe
                start = time.perf_counter()
                image = pipe(
                    body.prompt,
                    num_inference_steps=body.steps,
                    guidance_scale=GUIDANCE,
                    generator=torch.Generator("cpu").manual_seed(body.seed),
                ).images[0]
                stats["busy_s"] += time.perf_counter() - start
                stats["images"] += 1
                stats["calls"] += 1
            return Response(png(image), media_type="image/png")

        return app

    queue: list = []  # (arrived, body, future, loop), in arrival order
    cond = threading.Condition()
    phase = time.perf_counter()

    def batcher() -> None:
        while True:
            with cond:
                while not queue:
                    cond.wait()
                first = queue[0][0]
            end = phase + window_s * (math.floor((first - phase) / window_s) + 1)  # its window's end
            time.sleep(max(0.0, end - time.perf_counter()))
            with cond:
                N = queue[0][1].steps
                batch = [q for q in queue if q[1].steps == N][:b_max]
                for q in batch:
                    queue.remove(q)
            try:
                images = run([q[1] for q in batch])
                for q, image in zip(batch, images):
                    q[3].call_soon_threadsafe(q[2].set_result, image)
            except Exception as err:  # answered, never lost
                for q in batch:
                    q[3].call_soon_threadsafe(q[2].set_exception, err)

    threading.Thread(target=batcher, daemon=True, name="static-batcher").start()

    @app.post("/generate")
    async def generate_batched(body: PeerBody) -> Response:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with cond:
            queue.append((time.perf_counter(), body, future, loop))
            cond.notify()
        return Response(png(await future), media_type="image/png")

    return app


def serve_main(args) -> None:
    """``--serve``: one server on ``--port`` until SIGTERM."""
    import torch

    torch.set_num_threads(1)
    if args.serve == "edgediff":
        from edgediff.runtime.models import load_model
        from edgediff.service.config import ServiceConfig
        from edgediff.service.embedding import HashEmbedder
        from edgediff.service.engine import EdgeEngine
        from edgediff.service.server import serve

        options = json.loads(args.options)
        if "edge_profile" in options:
            options["edge_profile"] = tuple(options["edge_profile"])
        if "journal" in options:
            options["journal"] = Path(options["journal"])
        config = ServiceConfig(model=args.model, **options)
        embedder = HashEmbedder() if options.get("cache_gb", 1.0) > 0 and args.hash_embedder else None
        engine = EdgeEngine(config, model=load_model(args.model), embedder=embedder)
        serve(engine, port=args.port)
        return
    import uvicorn

    app = peer_app(args.model, args.serve, args.window, args.bmax)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


@contextlib.contextmanager
def running_server(kind: str, model_dir: str, args, options: dict | None = None, timeout_s: float = 120):
    """This script with ``--serve kind`` in a subprocess; yields ``(process, url)`` once
    ``/healthz`` answers; killed afterwards (a broken run's backlog is not drained)."""
    port = free_port()
    command = [sys.executable, __file__, "--serve", kind, "--port", str(port), "--model", model_dir]
    command += ["--window", str(args.window), "--bmax", str(args.bmax), "--options", json.dumps(options or {})]
    command += ["--hash-embedder"] if args.hash_embedder else []
    with running_process(command, port, f"the {kind} server", timeout_s, drain=False) as started:
        yield started


# ---------------------------------------------------------------------------- model and trace
def model_directory(name: str, root: Path) -> str:
    """A diffusers pipeline directory that every configuration loads: ``tiny`` (the shipped
    model, saved as one), ``tiny32`` (its architecture at 32x32 with random weights: a UNet
    step about 4x costlier), ``sd-random`` (the tests' tiny random-weight SD pipeline), or DIR."""
    from edgediff.runtime.models import ModelSpec, load_model
    from edgediff.runtime.tiny import TinyConfig

    if Path(name).is_dir():
        return name
    path = root / name
    if name == "tiny":
        load_model("tiny").backend.save(path)
    elif name == "tiny32":
        load_model(ModelSpec("tiny-random", tiny=TinyConfig(image_size=32))).backend.save(path)
    elif name == "sd-random":
        sys.path.insert(0, str(ROOT / "tests" / "runtime"))
        import runtime_dirs

        runtime_dirs.build_sd_directory(path)
    else:
        raise SystemExit(f"--model: {name!r} is not tiny, tiny32, sd-random or a pipeline directory")
    return str(path)


@dataclass
class Edge:
    """What this host's edge is: the calibrated ``L(b) = k b + h``, the latent payload's bits,
    one VAE decode's seconds (batch 1) and the PAI curve's ``a, b`` (200-step units)."""

    k: float
    h: float
    intermediate_bits: int
    decode_s: float
    pai: tuple[float, float]

    @property
    def l1(self) -> float:
        return self.k + self.h


def measure_edge(model_dir: str) -> Edge:
    import torch

    from edgediff.runtime.calibrate import CalibrationConfig, calibrate
    from edgediff.runtime.models import load_model
    from edgediff.runtime.payload import encode_latent
    from edgediff.runtime.request import GenerationRequest
    from edgediff.runtime.split import run_edge
    from edgediff.service.config import ServiceConfig

    torch.set_num_threads(1)
    model = load_model(model_dir)
    profile = calibrate(model, CalibrationConfig(batches=(1, 2, 4, 8), repeats=5, warmup=1))
    state = run_edge(model, GenerationRequest("a handwritten digit 3", steps=10), 0)
    bits = 8 * len(encode_latent(state))
    times = []
    with torch.inference_mode():
        for _ in range(5):
            start = time.perf_counter()
            model.decode(state.latent)
            times.append(time.perf_counter() - start)
    d = ServiceConfig()
    return Edge(profile.k, profile.h, bits, float(np.median(times)), (d.pai_a, d.pai_b))


def device_mix(edge: Edge) -> dict[str, float]:
    """The paper's user rows 3..10 (their weights), each as ``"k,h"`` with ``h = 0`` and
    ``k`` this edge's ``L(1)`` times the row's ``L(1)`` over the paper's edge's."""
    from edgediff.core.profiles import EDGE_ROW, PROFILE_TABLE
    from edgediff.twin.config import PAPER_DEVICE_MIX

    edge_l1 = PROFILE_TABLE[EDGE_ROW].sum()
    mix: dict[str, float] = {}
    for name, weight in PAPER_DEVICE_MIX.items():
        factor = PROFILE_TABLE[int(name.removeprefix("row"))].sum() / edge_l1
        key = f"{float(edge.l1 * factor)!r},0"
        mix[key] = mix.get(key, 0.0) + weight
    return mix


def make_trace(kind: str, rate: float, duration_s: float, steps: tuple[int, ...], edge: Edge, args, seed: int):
    """Seeded arrivals at ``rate`` requests/s on average: ``poisson``, or ``bursty`` (Poisson
    at 4x the rate during the first quarter of every 4 s, nothing in the rest: the same mean).
    Each request's step count is drawn from ``steps``; prompts ``"a handwritten digit c"``."""
    from edgediff.twin.config import WorkloadConfig, make_site
    from edgediff.twin.workload import generate

    burst = 4.0 if kind == "bursty" else 1.0
    site = make_site(profile={"k": edge.k, "h": edge.h}, window_s=args.window, cache_gb=0, b_max=args.bmax)
    workload = WorkloadConfig(
        rate=rate * burst,
        duration_s=duration_s,
        steps=max(steps),
        users=200,
        device_mix=device_mix(edge),
        classes=50,
        topics=10,
    )
    arrivals = generate(workload, site, seed=seed)
    keep = (arrivals.time % 4.0) < 4.0 / burst
    rng = np.random.default_rng([seed, 31])
    picked = {
        name: getattr(arrivals, name)[keep] for name in ("time", "user", "cls", "alpha", "k", "h")
    }  # fmt: skip
    picked["steps"] = rng.choice(np.array(steps, dtype=np.int64), size=int(keep.sum()))
    arrivals = replace(arrivals, **picked)
    prompts = [f"a handwritten digit {c % 10}" for c in arrivals.cls]
    return replace(arrivals, prompts=prompts)


# ---------------------------------------------------------------------------- the clients
@dataclass
class Run:
    """One configuration on one trace: per request the client-side seconds from the trace's
    start (``submitted``, ``answered``; NaN: no answer before the cut), the split ``n`` (local
    steps), the answer's bytes and the window's granted count (the link's ``b``)."""

    config: str
    submitted: np.ndarray
    answered: np.ndarray
    split: np.ndarray
    answer_bytes: np.ndarray
    link_b: np.ndarray
    busy_s: float
    rejected: int = 0
    errors: list = field(default_factory=list)
    cache_hits: int = 0
    cut_s: float = math.nan
    step_scale: float = 1.0  # edgediff: its steps' measured seconds over the calibrated L(b)
    decision_scale: float = 1.0  # edgediff: what its windows multiplied L(b) by at the run's end (profile_from_steps)
    denied_reasons: dict = field(default_factory=dict)  # edgediff: each denial's reason, counted


async def replay(url: str, config: str, arrivals, cut_s: float) -> Run:
    """Submit each request at its trace time on its own connection; wait for its answer
    (the PNG; for edgediff the latent, or the 409 that says "run it on the device")."""
    host, port = url.removeprefix("http://").split(":")
    n = len(arrivals)
    submitted, answered = np.full(n, np.nan), np.full(n, np.nan)
    sizes, ids = np.zeros(n), [None] * n
    rejected, errors = [0], []
    t0 = time.perf_counter() + 0.2
    edgediff = config.startswith("edgediff")

    async def one(i: int) -> None:
        await asyncio.sleep(max(0.0, t0 + float(arrivals.time[i]) - time.perf_counter()))
        http = RawHttp(host, int(port))
        prompt, steps = arrivals.prompts[i], int(arrivals.steps[i])
        submitted[i] = time.perf_counter() - t0
        try:
            if not edgediff:
                body = {"prompt": prompt, "steps": steps, "seed": i}
                status, _, answer = await http.request("POST", "/generate", json.dumps(body).encode())
                if status != 200:
                    raise RuntimeError(f"/generate answered {status}")
            else:
                body = {
                    "prompt": prompt,
                    "steps": steps,
                    "seed": i,
                    "alpha": float(arrivals.alpha[i]),
                    "profile": {"k": float(arrivals.k[i]), "h": float(arrivals.h[i])},
                }
                status, _, answer = await http.request("POST", "/v1/requests", json.dumps(body).encode())
                if status == 503:
                    rejected[0] += 1
                    return
                if status != 202:
                    raise RuntimeError(f"submit answered {status}: {answer[:200]!r}")
                ids[i] = json.loads(answer)["id"]
                while True:
                    status, _, answer = await http.request("GET", f"/v1/requests/{ids[i]}/latent?wait=30")
                    if status != 202:
                        break
                if status not in (200, 409):
                    raise RuntimeError(f"latent answered {status}")
                answer = answer if status == 200 else b""
            answered[i] = time.perf_counter() - t0
            sizes[i] = len(answer)
        except Exception as err:  # counted, never hidden
            errors.append(f"request {i}: {type(err).__name__}: {err}")
        finally:
            await http.close()

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    _, late = await asyncio.wait(tasks, timeout=cut_s + 0.2)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    split = np.zeros(n, dtype=np.int64)
    link_b = np.ones(n)
    hits = 0
    reasons: dict[str, int] = {}
    if edgediff:
        split[:] = arrivals.steps
        statuses = await fetch_statuses(host, int(port), ids)
        granted_per_window: dict[int, int] = {}
        for s in statuses:
            if s and s.get("granted"):
                granted_per_window[s["window"]] = granted_per_window.get(s["window"], 0) + 1
        for i, s in enumerate(statuses):
            if s and s.get("status") == "denied":
                reasons[s.get("reason")] = reasons.get(s.get("reason"), 0) + 1
            if s and s.get("split") is not None:
                split[i] = s["split"]
                hits += bool(s.get("cache_hit_step"))
                if s.get("granted"):
                    link_b[i] = granted_per_window[s["window"]]
    run = Run(config, submitted, answered, split, sizes, link_b, math.nan, rejected[0], errors, hits, cut_s)
    run.denied_reasons = reasons
    return run


async def fetch_statuses(host: str, port: int, ids: list) -> list:
    http = RawHttp(host, port)
    out = []
    for job in ids:
        if job is None:
            out.append(None)
            continue
        status, _, answer = await http.request("GET", f"/v1/requests/{job}")
        out.append(json.loads(answer) if status == 200 else None)
    await http.close()
    return out


def edge_counters(url: str, config: str) -> np.ndarray:
    """The server's busy seconds so far; for edgediff also its step seconds and their
    calibrated ideal (``/v1/info`` ``stats``: the engine thread's working time, ``busy_s``,
    ``ideal_s``) and what its windows multiply ``L(b)`` by now (1 with ``profile_from_steps``
    off)."""
    import httpx

    if config.startswith("edgediff"):
        info = httpx.get(f"{url}/v1/info", timeout=60).json()
        stats = info["stats"]
        scale = info["edge_step_scale"] if info["profile_from_steps"] else 1.0
        return np.array([stats["engine_busy_s"], stats["busy_s"], stats["ideal_s"], scale])
    return np.array([httpx.get(f"{url}/stats", timeout=60).json()["busy_s"], 0.0, 0.0, 1.0])


SERVICE_OPTIONS = {  # the service's settings per configuration (ServiceConfig keys)
    "edgediff-same": {"policy": "b2", "n_hat_fraction": 0.0, "cache_gb": 0.0},
    "edgediff": {"policy": "exact", "cache_gb": 0.0},
    "edgediff+cache": {"policy": "exact", "cache_gb": 1.0},
    "edgediff-calibrated": {"policy": "exact", "cache_gb": 0.0, "profile_from_steps": False},
}


JOURNALS = itertools.count()  # --journal: one file per server start


def service_options(config: str, edge: Edge, args) -> dict | None:
    """The edgediff server's :class:`ServiceConfig` keys (``None`` for a peer): the service as
    shipped (its defaults, ``profile_from_steps`` included) but for the configuration's own
    keys, the benchmark's window, ``B_max`` and queue, and the calibration measured here. With
    ``--journal DIR`` each server start writes its journal there (``CONFIG-N.jsonl``)."""
    if config in PEERS:
        return None
    journal = {}
    if args.journal is not None:
        args.journal.mkdir(parents=True, exist_ok=True)
        journal = {"journal": str(args.journal / f"{config}-{next(JOURNALS)}.jsonl")}
    return {
        **SERVICE_OPTIONS[config],
        **journal,
        "window_s": args.window,
        "b_max": args.bmax,
        "queue_limit": args.queue,
        "edge_profile": [edge.k, edge.h],
        "engine_process": False,  # one process, as each peer
        "record_limit": 100_000,
    }


def device_run(arrivals) -> Run:
    """All on the device: nothing on the edge; every step local (split ``N``)."""
    zeros = np.zeros(len(arrivals))
    t = arrivals.time.copy()
    return Run("device", t, t, arrivals.steps.copy(), zeros, zeros + 1, 0.0, cut_s=float(t.max()))


def run_sweep(config: str, model_dir: str, traces: list, edge: Edge, args) -> list[Run]:
    """``config`` on each trace in turn, on the real runtime. Its server is started once and
    reused while it keeps up; it is started afresh after a run that left requests unanswered
    (their backlog would weigh on the next run) and, with the cache on, before every run (each
    run starts from an empty cache)."""
    if config == "device":
        return [device_run(arrivals) for arrivals in traces]
    kind = config if config in PEERS else "edgediff"
    runs: list[Run] = []
    with contextlib.ExitStack() as stack:
        url = None
        for arrivals in traces:
            if url is None:
                _, url = stack.enter_context(running_server(kind, model_dir, args, service_options(config, edge, args)))
            end = float(arrivals.time.max())
            cut_s = end + args.drain * max(end, 1.0)
            before = edge_counters(url, config)
            run = asyncio.run(replay(url, config, arrivals, cut_s))
            after = edge_counters(url, config)
            run.busy_s, step_s, ideal_s = (after - before)[:3]
            run.decision_scale = float(after[3])
            run.step_scale = step_s / ideal_s if ideal_s > 0 else 1.0
            runs.append(run)
            if config.endswith("+cache") or not np.isfinite(run.answered).all():
                stack.close()
                url = None
    return runs


# ---------------------------------------------------------------------------- the figures
def latency_of(run: Run, arrivals, edge: Edge) -> tuple[np.ndarray, np.ndarray]:
    """End-to-end latency per request (unanswered: up to the cut) and whether answered:
    the edge's part measured, the device's scheduled by its profile, the link by eq. (3)."""
    from edgediff.core.link import transmission_latency
    from edgediff.service.config import ServiceConfig

    d = ServiceConfig()
    device_l1 = arrivals.k + arrivals.h
    decode_dev = edge.decode_s * device_l1 / edge.l1
    answered = np.isfinite(run.answered)
    edge_part = np.where(answered, run.answered, run.cut_s) - run.submitted
    bits = np.array([8 * len(p.encode()) for p in arrivals.prompts]) + 8 * run.answer_bytes
    link = np.where(run.answer_bytes > 0, transmission_latency(bits, run.link_b, d.eta, d.W_max), 0.0)
    device_part = run.split * device_l1 + np.where(run.config in ("plain", "static"), 0.0, decode_dev)
    if run.config == "device":
        edge_part = np.zeros(len(arrivals))
    return edge_part + link + device_part, answered


def utility_of(latency: np.ndarray, split: np.ndarray, arrivals, edge: Edge) -> np.ndarray:
    from edgediff.core.pai import PaiCurve

    curve = PaiCurve(*edge.pai)
    pai = np.array([curve.for_steps(int(N))(int(s)) for N, s in zip(arrivals.steps, split)])
    return arrivals.alpha * pai - latency


def summarize(run: Run, arrivals, edge: Edge) -> dict:
    latency, answered = latency_of(run, arrivals, edge)
    n = len(arrivals)
    done_at = run.submitted + latency  # when the image is there (the device's part included)
    span = float(np.nanmax(np.where(answered, done_at, np.nan)) - np.nanmin(run.submitted)) if answered.any() else 0
    # the edge fell behind: its last answer came long after the last arrival (a stable queue
    # drains within about one service time and a window)
    last_answer = float(np.nanmax(run.answered)) if answered.any() else math.inf
    drain_s = last_answer - float(run.submitted.max())
    growing = run.config != "device" and drain_s > 0.25 * float(run.submitted.max()) + 1.0
    unanswered = int(n - answered.sum()) if run.config != "device" else 0
    # the same-work comparison holds only while every request runs on the edge
    denied = int((run.split >= arrivals.steps).sum()) if run.config == "edgediff-same" else 0
    breaks = bool(unanswered or run.rejected or growing or run.errors or denied)
    return {
        "config": run.config,
        "requests": n,
        "answered": n - unanswered - run.rejected,
        "unanswered": unanswered,
        "rejected": run.rejected,
        "errors": len(run.errors),
        "first_error": run.errors[0] if run.errors else None,
        "latency_mean_s": float(latency.mean()),
        "latency_p50_s": float(np.percentile(latency, 50)),
        "latency_p95_s": float(np.percentile(latency, 95)),
        "throughput": float(answered.sum() / span) if span > 0 else math.nan,
        "busy": float(run.busy_s / span) if span > 0 else math.nan,
        "utility_mean": float(utility_of(latency, run.split, arrivals, edge).mean()),
        "offloaded": float(np.mean(run.split < arrivals.steps)),
        "cache_hits": run.cache_hits,
        "step_scale": run.step_scale,
        "decision_scale": run.decision_scale,
        "denied_reasons": run.denied_reasons,
        "growing": bool(growing),
        "drain_s": drain_s,
        "denied": denied,
        "breaks": breaks,
    }


def twin_rows(arrivals, edge: Edge, args, runs: dict) -> dict:
    """The twin on the same trace for the configurations it models (the service's windows and
    continuous batching: ``device`` as policy b3, and the three edgediff ones); the plain and
    static servers are not in its vocabulary. Its batched steps run at the run's pace (the
    calibration times the run's measured step seconds over it, as ``bench_twin.py --validate``);
    the latency has the same device decode added."""
    from edgediff.service.config import ServiceConfig
    from edgediff.twin.config import Site, TwinConfig
    from edgediff.twin.sim import simulate

    out = {}
    decode_dev = edge.decode_s * (arrivals.k + arrivals.h) / edge.l1
    twin_arrivals = replace(arrivals)
    for config, run in runs.items():
        if config in ("plain", "static"):
            continue
        options = {"policy": "b3", "cache_gb": 0.0} if config == "device" else dict(SERVICE_OPTIONS[config])
        if options["cache_gb"] > 0 and len(set(arrivals.steps.tolist())) > 1:
            continue  # the twin's class-keyed cache takes one step count per run
        service = ServiceConfig(
            window_s=args.window, b_max=args.bmax, queue_limit=args.queue, edge_profile=(edge.k, edge.h), **options
        )
        pace = (edge.k * run.step_scale, edge.h * run.step_scale)
        site = Site(service.site, "loopback", edge.intermediate_bits, step_profile=pace)
        result = simulate(TwinConfig((site,)), twin_arrivals)
        latency = result.latency + decode_dev
        out[config] = {
            "latency_mean_s": float(latency.mean()),
            "latency_p95_s": float(np.percentile(latency, 95)),
            "utility_mean": float((result.utility - decode_dev).mean()),
        }
    return out


def fmt(value: float, broken: bool = False) -> str:
    return ("> " if broken else "") + (f"{value:.3f}" if math.isfinite(value) else "n/a")


def print_table(title: str, rows: list[dict], twins: dict) -> None:
    print(f"\n### {title}\n")
    print(
        "| configuration | answered | mean s | p50 s | p95 s | images/s | edge busy | utility | offloaded "
        "| twin mean s (err) | twin p95 s (err) | breaks |"
    )
    print("| --- | " + "--- | " * 11)
    for r in rows:
        twin = twins.get(r["config"])
        t_mean = t_p95 = "n/a"
        if twin:
            err = (twin["latency_mean_s"] - r["latency_mean_s"]) / r["latency_mean_s"]
            t_mean = f"{twin['latency_mean_s']:.3f} ({100 * err:+.0f} %)"
            err = (twin["latency_p95_s"] - r["latency_p95_s"]) / r["latency_p95_s"]
            t_p95 = f"{twin['latency_p95_s']:.3f} ({100 * err:+.0f} %)"
        b = r["breaks"]
        why = []
        if r["unanswered"]:
            why.append(f"{r['unanswered']} unanswered at the cut")
        if r["rejected"]:
            why.append(f"{r['rejected']} answered 503")
        if r["growing"]:
            why.append(f"drained {r['drain_s']:.1f} s after the last arrival")
        if r["errors"]:
            why.append(f"{r['errors']} errors")
        if r["denied"]:
            why.append(f"{r['denied']} denied (not the peers' work)")
        print(
            f"| {r['config']} | {r['answered']}/{r['requests']} | {fmt(r['latency_mean_s'], b)} "
            f"| {fmt(r['latency_p50_s'], b)} | {fmt(r['latency_p95_s'], b)} | {fmt(r['throughput'])} "
            f"| {fmt(r['busy'])} | {fmt(r['utility_mean'])} | {r['offloaded']:.2f} | {t_mean} | {t_p95} "
            f"| {'yes: ' + ', '.join(why) if b else 'no'} |"
        )


def print_ratios(rows: dict) -> None:
    """edgediff's figures over each peer's at this load."""
    for ours, peers in (
        ("edgediff-same", ("plain", "static")),
        ("edgediff", PEERS),
        ("edgediff+cache", PEERS),
        ("edgediff-calibrated", PEERS),
    ):
        if ours not in rows:
            continue
        parts = []
        for peer in peers:
            if peer not in rows:
                continue
            a, b = rows[ours], rows[peer]
            parts.append(
                f"vs {peer}: p95 {a['latency_p95_s'] / b['latency_p95_s']:.2f}x, "
                f"mean {a['latency_mean_s'] / b['latency_mean_s']:.2f}x, "
                f"images/s {a['throughput'] / b['throughput']:.2f}x, "
                f"utility {a['utility_mean'] - b['utility_mean']:+.3f}"
            )
        print(f"- {ours}: " + "; ".join(parts))


def verdicts(results: dict) -> None:
    """The issue's targets from the sweep: the highest load each carries (bounded queue, and
    for the same-work comparison every request on the edge), p95 at a load both batching
    servers carry, and utility against every peer at every load."""
    for trace, by_load in results.items():
        loads = sorted(by_load)
        carried = {
            c: max((x for x in loads if c in by_load[x] and not by_load[x][c]["breaks"]), default=None)
            for c in CONFIGS + OPTIONAL
            if any(c in by_load[x] for x in loads)
        }
        print(f"\n{trace}: highest load carried (x the plain server's capacity): " + ", ".join(
            f"{c} {'none' if x is None else f'{x:g}'}" for c, x in carried.items()
        ))  # fmt: skip
        same, plain = carried.get("edgediff-same"), carried.get("plain")
        if same is not None and plain:
            print(
                f"  target 1a (edgediff-same carries >= 1.5x the plain server's load): {same / plain:.2f}x"
                f"{' or more (the sweep ends there)' if same == loads[-1] else ''}: "
                f"{'met' if same / plain >= 1.5 else 'NOT met'}"
            )
        both = [
            x
            for x in loads
            if all(c in by_load[x] and not by_load[x][c]["breaks"] for c in ("static", "edgediff-same"))
        ]
        for x in both:
            ratio = by_load[x]["edgediff-same"]["latency_p95_s"] / by_load[x]["static"]["latency_p95_s"]
            print(
                f"  target 1b at load {x:g} (p95 edgediff-same / static <= 0.8): {ratio:.2f}: "
                f"{'met' if ratio <= 0.8 else 'NOT met'}"
            )
        for x in loads:
            rows = by_load[x]
            for ours in ("edgediff", "edgediff+cache", "edgediff-calibrated"):
                if ours not in rows:
                    continue
                margins = {p: rows[ours]["utility_mean"] - rows[p]["utility_mean"] for p in PEERS if p in rows}
                ok = all(m >= 0 for m in margins.values())
                print(
                    f"  target 2 at load {x:g}, {ours}: utility margin "
                    + ", ".join(f"{p} {m:+.3f}" for p, m in margins.items())
                    + f": {'met' if ok else 'NOT met'}"
                )


def plain_capacity(edge: Edge, steps: tuple[int, ...], model_dir: str) -> float:
    """Requests/s the plain server carries: one over a pipeline call's seconds at the mean
    step count (median of 3, measured here, with the server's one thread)."""
    import torch

    torch.set_num_threads(1)
    pipe = load_pipeline(model_dir)
    N = round(float(np.mean(steps)))
    times = []
    for i in range(4):
        start = time.perf_counter()
        pipe(
            "a handwritten digit 1",
            num_inference_steps=N,
            guidance_scale=GUIDANCE,
            generator=torch.Generator().manual_seed(i),
        )
        times.append(time.perf_counter() - start)
    return 1.0 / float(np.median(times[1:]))


def bench(args) -> dict:
    steps = tuple(int(s) for s in args.steps.split(","))
    loads = [float(x) for x in args.loads.split(",")]
    configs = [c for c in args.configs.split(",")]
    unknown = [c for c in configs if c not in CONFIGS + OPTIONAL]
    if unknown:
        raise SystemExit(f"--configs: unknown configuration {unknown[0]!r} (one of {', '.join(CONFIGS + OPTIONAL)})")
    results: dict = {}
    with tempfile.TemporaryDirectory() as root:
        model_dir = model_directory(args.model, Path(root))
        edge = measure_edge(model_dir)
        capacity = plain_capacity(edge, steps, model_dir)
        print(
            f"model {args.model}: edge L(b) = {edge.k * 1e3:.2f} b + {edge.h * 1e3:.2f} ms (calibrated), "
            f"decode {edge.decode_s * 1e3:.2f} ms, latent {edge.intermediate_bits} bits; plain server capacity "
            f"{capacity:.2f} requests/s (one pipeline call at N = {round(float(np.mean(steps)))}); steps {steps}, "
            f"window {args.window} s, B_max {args.bmax}, {args.duration} s per trace"
        )
        for trace in args.traces.split(","):
            traces = [make_trace(trace, x * capacity, args.duration, steps, edge, args, args.seed) for x in loads]
            runs = {config: run_sweep(config, model_dir, traces, edge, args) for config in configs}
            results[trace] = {}
            for j, (x, arrivals) in enumerate(zip(loads, traces)):
                rows = {config: summarize(runs[config][j], arrivals, edge) for config in configs}
                twins = twin_rows(arrivals, edge, args, {c: runs[c][j] for c in configs}) if args.twin else {}
                results[trace][x] = rows
                print_table(
                    f"{trace}, load {x:g} x the plain server's capacity ({x * capacity:.2f} requests/s, "
                    f"{len(arrivals)} requests)",
                    list(rows.values()),
                    twins,
                )
                print()
                print_ratios(rows)
                ours = {c: r for c, r in rows.items() if c.startswith("edgediff")}
                if ours:
                    paces = ", ".join(f"{c} {r['step_scale']:.2f}" for c, r in ours.items())
                    scales = ", ".join(f"{c} {r['decision_scale']:.2f}" for c, r in ours.items())
                    print(
                        f"- edgediff's steps took these times the calibrated L(b): {paces}; "
                        f"its windows decided with L(b) times (at the run's end): {scales}"
                    )
                for c, r in ours.items():
                    if r["denied_reasons"]:
                        why = "; ".join(f"{n} x {reason}" for reason, n in r["denied_reasons"].items())
                        print(f"- {c} denied: {why}")
                for r in rows.values():
                    if r["first_error"]:
                        print(f"  {r['config']} first error: {r['first_error']}")
    verdicts(results)
    print(f"\nload average (1, 5, 15 min) at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny (default), tiny32, sd-random, or a pipeline directory")
    parser.add_argument("--loads", default="0.5,1,1.5,3", help="offered loads, x the plain server's capacity")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of arrivals per trace")
    parser.add_argument("--traces", default="poisson,bursty")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--steps", default="10,20,30", help="the step counts requests ask, drawn uniformly")
    parser.add_argument("--window", type=float, default=0.5, help="window K, s (static batching and edgediff)")
    parser.add_argument("--bmax", type=int, default=16, help="B_max: per static batch, per edgediff window")
    parser.add_argument("--queue", type=int, default=256, help="edgediff's queue limit (503 beyond)")
    parser.add_argument("--drain", type=float, default=1.0, help="the cut: this x the trace's length after its end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-twin", dest="twin", action="store_false")
    parser.add_argument("--hash-embedder", action="store_true", help="cache on: the hash embedder, not MiniLM")
    parser.add_argument("--quick", action="store_true", help="one Poisson trace of 5 s at loads 0.5 and 3")
    parser.add_argument("--json", type=Path, help="write the summaries here")
    parser.add_argument("--journal", type=Path, help="edgediff servers write their journals in this directory")
    parser.add_argument("--serve", choices=("plain", "static", "edgediff"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_main(args)
        return 0
    if args.quick:
        args.loads, args.duration, args.traces = "0.5,3", 5.0, "poisson"
    results = bench(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
