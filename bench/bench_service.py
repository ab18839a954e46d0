"""Load benchmark of the edge service on loopback: many concurrent clients, every request
accounted for, end-to-end latency percentiles, edge throughput against the executor's ideal.

The service runs as ``edgediff serve`` in a subprocess (tiny model, edge calibrated at
start-up, default cache with the real prompt embedder). ``--clients`` asyncio clients (100),
each on its own keep-alive connection (a minimal HTTP/1.1 client, see ``RawHttp``), send
``--requests`` requests each, one after another (closed loop): submit, then one long poll on
the latent (200: granted, the latent; 409: denied, "run locally").

End-to-end latency = submit to holding the edge's answer (the latent, or the "run locally"
decision). The device's own local steps are not run here: they would run on the users'
devices, not on this host. Prompts come from a pool with Zipf popularity, so the latent
cache sees repeats; device profiles are the paper's user rows 3..10 with random alpha.

Edge throughput: service member-steps/s = member-steps per second of the engine thread's
working time (everything but waiting for a window: decisions, embeddings, cache, executor
steps, payload encoding); the ideal is the executor's calibrated ``L(b) = k b + h`` summed
over the batches the edge really ran (what the same steps cost in the calibration's steady
state). The ratio ideal / working time is the service's efficiency (target 90 %); the rest is
split by the engine's phase timers (``/v1/info`` ``stats.phases_s``), its host work with no
step in flight (``stats.alone_s``), the engine thread's wall time beyond its CPU time (waiting
for the denoiser thread, the GIL or a core), the HTTP side's CPU, and each thread's time on a
core and runnable without one.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bench_service.py [--clients 100,200] [--requests 8] [--steps 20]
        [--model DIR] [--no-engine-process | --engine-only] [--pin-engine]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PRESETS = [f"row{r}" for r in range(3, 11)]
SUBJECTS = [
    "a red fox",
    "a lighthouse",
    "a bowl of ramen",
    "a castle",
    "a sailboat",
    "a city street",
    "sunflowers",
    "an astronaut",
    "a mountain lake",
    "a vintage car",
    "a robot",
    "a cat",
    "a dog",
    "a forest",
    "a desert",
]
STYLES = ["at dusk", "in the snow", "oil painting", "watercolor", "photograph"]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads_sched_s(pid: int) -> tuple[collections.Counter, collections.Counter]:
    """Per OS thread name (``top -H``'s; the engine names its threads) over ``pid`` and its
    descendants: seconds on a core, and seconds runnable but waiting for one (the scheduler's
    run-queue delay, Linux ``/proc/PID/task/TID/schedstat``). A thread waiting for the GIL
    sleeps: that is neither."""
    on_core, waiting = collections.Counter(), collections.Counter()
    for current in process_tree(pid):
        for task, name in named_tasks(current):
            with contextlib.suppress(OSError), open(f"/proc/{current}/task/{task}/schedstat") as f:
                on_core_ns, run_queue_ns = (int(v) for v in f.read().split()[:2])
                on_core[name] += on_core_ns / 1e9
                waiting[name] += run_queue_ns / 1e9
    return on_core, waiting


def pin_engine(pid: int) -> None:
    """The engine process (the descendant of ``pid`` with the engine's threads) alone on the last
    core; the HTTP process and this one (the clients) on the others."""
    cores = sorted(os.sched_getaffinity(0))
    engine = [p for p in process_tree(pid)[1:] if any(name == "edgediff-calls" for _, name in named_tasks(p))]
    for current, allowed in [*((e, cores[-1:]) for e in engine), (pid, cores[:-1]), (os.getpid(), cores[:-1])]:
        for task in os.listdir(f"/proc/{current}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task), set(allowed))


def named_tasks(pid: int) -> list[tuple[int, str]]:
    """``(thread id, OS thread name)`` of each thread of process ``pid`` (none once it is gone)."""
    tasks = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                tasks.append((int(task), f.read().strip()))
    return tasks


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (the engine process, denoiser workers), Linux /proc."""
    pids, stack = [], [pid]
    while stack:
        current = stack.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    stack += [int(c) for c in f.read().split()]
            pids.append(current)
    return pids


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants."""
    total = 0.0
    for current in process_tree(pid):
        with contextlib.suppress(OSError):
            total += process_cpu_s(current)
    return total


@contextlib.contextmanager
def running_service(options: list[str], timeout_s: float = 300):
    """``edgediff serve`` on a free loopback port in a subprocess: yields ``(process, url)``
    once ``/healthz`` answers; SIGTERM (drain) afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "edgediff", "serve", "--port", str(port), *options]
    with running_process(command, port, "the service", timeout_s, drain=True) as started:
        yield started


@contextlib.contextmanager
def running_process(command: list[str], port: int, name: str, timeout_s: float, drain: bool):
    """``command`` (a server on loopback ``port``, this checkout's ``src`` first, one torch
    thread unless ``OMP_NUM_THREADS`` says otherwise) in a subprocess: yields ``(process, url)``
    once ``/healthz`` answers; afterwards SIGTERM and a wait (``drain``) or a kill."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    # its log goes to a file: a pipe nobody reads fills after ~64 KB (13 minutes of window
    # lines) and then blocks the engine thread in a write
    log = tempfile.TemporaryFile("w+")
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if server.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{name} exited: {log.read()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.2)
        yield server, url
    finally:
        if drain:
            server.terminate()
            try:
                server.wait(timeout=120)
            except subprocess.TimeoutExpired:
                server.kill()
        else:
            server.kill()
        server.wait()
        log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RawHttp:
    """One keep-alive HTTP/1.1 connection per simulated device, written on asyncio streams:
    httpx's per-call overhead (~15 ms of CPU here) would otherwise be what this 2-core host
    measures. Enough HTTP for this service: Content-Length bodies, no chunking."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, dict, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        headers = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode().partition(":")
            headers[key.strip().lower()] = value.strip()
        payload = await self.reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection") == "close":
            await self.close()
        return status, headers, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def one_client(url: str, index: int, args, prompts, weights, rng, records: list) -> None:
    host, port = url.removeprefix("http://").split(":")
    http = RawHttp(host, int(port))
    for r in range(args.requests):
        prompt = prompts[rng.choice(len(prompts), p=weights)]
        body = {
            "prompt": prompt,
            "steps": args.steps,
            "seed": index * 1000 + r,
            "alpha": float(rng.uniform(0.5, 4.0)),
            "preset": PRESETS[rng.integers(len(PRESETS))],
        }
        record = {"client": index, "error": None, "retries": 0}
        start = time.perf_counter()
        try:
            while True:
                status, headers, answer = await http.request("POST", "/v1/requests", json.dumps(body).encode())
                if status != 503:
                    break
                record["retries"] += 1
                await asyncio.sleep(float(headers.get("retry-after", 1)))
            if status != 202:
                raise RuntimeError(f"submit answered {status}: {answer[:200]!r}")
            record["submit_s"] = time.perf_counter() - start
            job = json.loads(answer)["id"]
            record["id"] = job
            # one long poll on the latent: 200 = granted (the latent), 409 = denied/failed (the status)
            while True:
                status, headers, answer = await http.request("GET", f"/v1/requests/{job}/latent?wait=20")
                if status != 202:
                    break
            if status == 200:
                record["payload_bytes"] = len(answer)
            elif status != 409:
                raise RuntimeError(f"latent answered {status}: {answer[:200]!r}")
            record["latency_s"] = time.perf_counter() - start
        except Exception as err:  # counted, never hidden
            record["error"] = f"{type(err).__name__}: {err}"
        records.append(record)
    await http.close()


def prompt_pool() -> tuple[list[str], np.ndarray]:
    """The benchmark's prompts and their Zipf popularity (so that the latent cache sees repeats)."""
    prompts = [f"{s} {t}" for s in SUBJECTS for t in STYLES]
    weights = 1.0 / np.arange(1, len(prompts) + 1) ** 0.9
    return prompts, weights / weights.sum()


async def load(url: str, args) -> tuple[list, float]:
    prompts, weights = prompt_pool()
    records: list = []
    start = time.perf_counter()
    await asyncio.gather(
        *(
            one_client(url, i, args, prompts, weights, np.random.default_rng([args.seed, i]), records)
            for i in range(args.clients)
        )
    )
    return records, time.perf_counter() - start


def print_throughput(stats: dict, before: dict, wall: float, server_cpu: float | None, apart: bool) -> None:
    """Service member-steps/s against the executor's calibrated ideal, and where the rest went."""
    member_steps = stats["member_steps"] - before["member_steps"]
    ideal = stats["ideal_s"] - before["ideal_s"]
    working = stats["engine_busy_s"] - before["engine_busy_s"]
    engine_cpu = stats["engine_cpu_s"] - before["engine_cpu_s"]
    phases = {k: v - before["phases_s"][k] for k, v in stats["phases_s"].items()}
    steps = stats["steps"] - before["steps"]
    print(
        f"edge: {stats['windows'] - before['windows']} windows, {steps} batched steps, mean batch "
        f"{member_steps / steps:.2f}, {member_steps} member-steps; engine working {working:.2f} s "
        f"({working / wall:.1%} of wall time)"
    )
    print(
        f"service {member_steps / working:.1f} member-steps/s vs executor ideal {member_steps / ideal:.1f} "
        f"(calibrated L(b) over the same batches): ratio {ideal / working:.1%} (target 90 %)"
    )
    print(f"  where the engine's working time went (ideal {ideal:.2f} s):")
    for name, seconds in sorted(phases.items(), key=lambda kv: -kv[1]):
        extra = f", {seconds - ideal:+.2f} s against the ideal" if name == "step" else ""
        print(f"    {name:<10} {seconds:7.2f} s  {seconds / working:6.1%}{extra}")
    rest = working - sum(phases.values())
    print(f"    {'loop':<10} {rest:7.2f} s  {rest / working:6.1%}  (locks, bookkeeping, metrics)")
    alone, turns = stats["alone_s"] - before["alone_s"], stats["alone_turns"] - before["alone_turns"]
    print(
        f"  host work with no step in flight: {alone:.2f} s ({alone / working:.1%}) in {turns} turns "
        "(decisions on an empty batch, hand-offs after the last member left: nothing to overlap)"
    )
    waited = f"engine thread: CPU {engine_cpu:.2f} s of {working:.2f} s working (the other {working - engine_cpu:.2f} s"
    print(f"  {waited} it waited for the denoiser thread, the GIL or a core)")
    if server_cpu is not None:
        http = server_cpu if apart else server_cpu - engine_cpu  # apart: the HTTP process has no engine thread
        where = "its own process" if apart else "the engine's process"
        print(f"  HTTP (uvicorn, routes; in {where}): {http:.2f} s of CPU")


def run_engine_only(args, clients: int) -> int:
    """The same closed loop of ``clients`` against an :class:`EdgeEngine` in this process,
    with no HTTP: what the engine itself reaches against its calibrated ideal on this host."""
    from edgediff.service.config import ServiceConfig
    from edgediff.service.engine import EdgeEngine
    from edgediff.service.schemas import SubmitRequest

    config = ServiceConfig(
        model=args.model, window_s=args.window, b_max=args.bmax, cache_gb=args.cache_gb, queue_limit=100_000
    )
    engine = EdgeEngine(config)
    engine.start()
    prompts, weights = prompt_pool()
    rngs = [np.random.default_rng([args.seed, i]) for i in range(clients)]
    before = engine.info()["stats"]
    start = time.perf_counter()
    try:
        for r in range(args.requests):  # each client's next request once its previous one is answered
            jobs = []
            for i, rng in enumerate(rngs):
                body = SubmitRequest(
                    prompt=prompts[rng.choice(len(prompts), p=weights)],
                    steps=args.steps,
                    seed=i * 1000 + r,
                    alpha=float(rng.uniform(0.5, 4.0)),
                    preset=PRESETS[rng.integers(len(PRESETS))],
                )
                jobs.append(engine.submit(body))
            for job in jobs:
                job.finished.wait(120)
        wall = time.perf_counter() - start
        after = engine.info()["stats"]
    finally:
        engine.stop()
    print(
        f"edgediff engine alone (no HTTP, same closed loop): {clients} clients x {args.requests} requests, "
        f"N = {args.steps}, window {args.window} s, B_max {args.bmax}; wall time {wall:.1f} s; "
        f"terminal {dict(after['terminal'])}"
    )
    print_throughput(after, before, wall, None, True)
    return 0


def run(args, clients: int) -> int:
    if args.engine_only:
        return run_engine_only(args, clients)
    args = argparse.Namespace(**{**vars(args), "clients": clients})
    options = ["--window", str(args.window), "--bmax", str(args.bmax), "--cache-gb", str(args.cache_gb)]
    options += ["--model", args.model]
    options += ["--engine-process" if args.engine_process else "--no-engine-process"]
    with running_service(options) as (server, url):
        if args.pin_engine:
            pin_engine(server.pid)
        info = before = httpx.get(f"{url}/v1/info").json()
        cpu0, tree0, sched0 = process_cpu_s(server.pid), tree_cpu_s(server.pid), threads_sched_s(server.pid)
        records, wall = asyncio.run(load(url, args))
        server_cpu, tree_cpu = process_cpu_s(server.pid) - cpu0, tree_cpu_s(server.pid) - tree0
        threads, core_wait = (now - then for now, then in zip(threads_sched_s(server.pid), sched0))
        after = httpx.get(f"{url}/v1/info").json()
        metrics = httpx.get(f"{url}/metrics").text
        ids = [r["id"] for r in records if "id" in r]
        with httpx.Client(base_url=url) as http:  # after the load: each request's final record
            for r in records:
                if "id" in r:
                    r["status"] = http.get(f"/v1/requests/{r['id']}").json()
        final = [r["status"]["status"] for r in records if "status" in r]

    own = resource.getrusage(resource.RUSAGE_SELF)
    total = args.clients * args.requests
    errors = [r for r in records if r["error"]]
    ok = [r for r in records if not r["error"]]
    latency = np.array([r["latency_s"] for r in ok])
    granted = np.array([r["latency_s"] for r in ok if r["status"]["granted"]])
    denied = np.array([r["latency_s"] for r in ok if r["status"]["granted"] is False])
    stats = after["stats"]
    terminal = stats["terminal"]
    hits = sum(1 for r in ok if r["status"]["cache_hit_step"])
    profile = info["edge_profile"]

    def pct(a, q):
        return f"{np.percentile(a, q):.3f}" if len(a) else "n/a"

    print(
        f"edgediff service load: {args.clients} concurrent clients x {args.requests} requests = {total}, "
        f"N = {args.steps}, window {args.window} s, B_max {args.bmax}, loopback, model {info['model']}"
    )
    print(f"edge profile (calibrated at start-up): L(b) = {profile['k'] * 1000:.2f} b + {profile['h'] * 1000:.2f} ms")
    print(
        f"wall time {wall:.1f} s; submitted {len(records)}, errors {len(errors)}, 503 retries "
        f"{sum(r['retries'] for r in records)}"
    )
    accounted = len(ids) == total and all(s in ("done", "denied", "failed") for s in final)
    print(
        f"accounted: {len(ids)} ids, terminal states {dict(terminal)} (server), every request terminal: "
        f"{accounted}; failed {terminal['failed']}"
    )
    print(
        f"end-to-end latency (submit -> edge answer), s: p50 {pct(latency, 50)}, p99 {pct(latency, 99)}, "
        f"max {latency.max():.3f}"
        if len(latency)
        else "no latencies"
    )
    print(
        f"  granted ({len(granted)}): p50 {pct(granted, 50)}, p99 {pct(granted, 99)}; "
        f"denied ({len(denied)}): p50 {pct(denied, 50)}, p99 {pct(denied, 99)}"
    )
    queued = np.array([r["status"]["queued_s"] for r in ok])
    edge = np.array([r["status"]["edge_s"] for r in ok if r["status"]["edge_s"] is not None])
    print(
        f"server side, s: arrival -> decision p50 {pct(queued, 50)}, p99 {pct(queued, 99)}; "
        f"decision -> latent (granted) p50 {pct(edge, 50)}, p99 {pct(edge, 99)}"
    )
    submit = np.array([r["submit_s"] for r in ok])
    print(f"client side, s: submit -> 202 p50 {pct(submit, 50)}, p99 {pct(submit, 99)}")
    print(f"cache hits {hits} of {len(granted)} granted")
    if stats["steps"]:
        print_throughput(stats, before["stats"], wall, server_cpu, args.engine_process)
    sums = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in metrics.splitlines()
        if line.startswith(("edgediff_decision_seconds_sum", "edgediff_decision_seconds_count"))
    }
    if sums.get("edgediff_decision_seconds_count"):
        print(
            f"window decisions (policy, the wait for prompt work, cache peeks): mean "
            f"{sums['edgediff_decision_seconds_sum'] / sums['edgediff_decision_seconds_count'] * 1000:.1f} ms"
        )
    print(f"load average at the end (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(
        f"CPU time: benchmark clients {own.ru_utime + own.ru_stime:.1f} s (cumulative), service processes "
        f"{tree_cpu:.1f} s during the load (this host has {os.cpu_count()} cores, shared)"
    )
    named = ", ".join(
        f"{name} {seconds:.2f} ({core_wait[name]:.2f})" for name, seconds in threads.most_common() if seconds >= 0.01
    )
    print(f"  by thread, s on a core (s runnable, waiting for one): {named}")
    for r in errors[:5]:
        print("error:", r["error"])
    return 0 if not errors and accounted else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="100,200", help="concurrent clients, one run per comma-separated value")
    parser.add_argument("--requests", type=int, default=8, help="requests per client, one after another (8)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--window", type=float, default=0.5)
    parser.add_argument("--bmax", type=int, default=20)
    parser.add_argument("--cache-gb", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model",
        default="tiny",
        help="the served model (edgediff serve --model): the shipped tiny one (default), or a pipeline directory",
    )
    parser.add_argument(
        "--pin-engine",
        action="store_true",
        help="the engine process alone on the last core, HTTP and clients on the others (is the gap cores?)",
    )
    parser.add_argument(
        "--engine-only",
        action="store_true",
        help="no HTTP: the same closed loop submitted to an engine in this process (the engine's own ceiling)",
    )
    parser.add_argument(
        "--engine-process",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve with --engine-process (the engine apart from the HTTP server; default), or in one process",
    )
    args = parser.parse_args()
    status = 0
    for clients in (int(c) for c in args.clients.split(",")):
        status |= run(args, clients)
        print()
    return status


if __name__ == "__main__":
    sys.exit(main())
