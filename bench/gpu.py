"""GPU benchmark: the runtime, the batched executor, the denoiser workers and the service on
CUDA, with an SD-1.5-shaped model (``arch:sd15``: SD 1.5's UNet, VAE and CLIP-L shapes, seeded
random weights, nothing downloaded) at 512x512 in float16; one table at the end.

- runtime: the bare denoiser call (batch 1 with guidance: 2 UNet rows) and a 50-step split
  generation (25 steps at the edge, the payload, 25 local, VAE decoding), wall time;
- executor: executor step time with b guided members against the bare denoiser call on the
  same 2b rows (the ideal), per batch size, and the fitted ``L(b) = k b + h``;
- workers: the same fit through a :class:`~edgediff.runtime.workers.WorkerPool` of G workers
  (G = the CUDA devices), against the in-process fit (what the worker process hop costs);
- service: the edge service in this process (``EdgeEngine`` behind its HTTP server on
  loopback, ``ServiceThread``), ``--clients`` closed-loop clients each sending ``--requests``
  requests; throughput and latency from submit to holding the edge's answer.

    PYTHONPATH=src python bench/gpu.py [--batches 1,2,4,8,16] [--steps 50] [--clients 8] [--requests 4]
    PYTHONPATH=src python bench/gpu.py --device cpu --tiny      # smoke run: the tiny model, seconds

Without CUDA (and without ``--device cpu``) it stops with one line, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="torch device (cuda, cuda:1; cpu only for the smoke run)")
    parser.add_argument("--tiny", action="store_true", help="the tiny model instead of arch:sd15 (smoke run)")
    parser.add_argument("--dtype", help="model dtype (default float16 for arch:sd15, float32 with --tiny)")
    parser.add_argument("--batches", default=None, help="executor batch sizes (default 1,2,4,8,16; --tiny: 1,2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per batch (default 5; --tiny: 1)")
    parser.add_argument("--steps", type=int, default=None, help="steps of a generation (default 50; --tiny: 4)")
    parser.add_argument("--clients", type=int, default=None, help="service clients (default 8; --tiny: 2)")
    parser.add_argument("--requests", type=int, default=None, help="requests per client (default 4; --tiny: 1)")
    parser.add_argument("--workers", type=int, default=None, help="denoiser workers G (default: CUDA devices; 1)")
    args = parser.parse_args(argv)
    smoke = args.tiny
    args.dtype = args.dtype or ("float32" if smoke else "float16")
    args.batches = tuple(int(b) for b in (args.batches or ("1,2" if smoke else "1,2,4,8,16")).split(","))
    args.repeats = args.repeats or (1 if smoke else 5)
    args.steps = args.steps or (4 if smoke else 50)
    args.clients = args.clients or (2 if smoke else 8)
    args.requests = args.requests or (1 if smoke else 4)
    return args


def cuda_missing(device: str) -> str | None:
    """Why ``device`` cannot run here (one line), or None."""
    import torch

    if not device.startswith("cuda"):
        return None
    if not torch.cuda.is_available():
        return (
            f"bench/gpu.py: CUDA is not available here (torch {torch.__version__}); run it on a machine with an "
            "NVIDIA GPU, or `--device cpu --tiny` for the smoke run"
        )
    index = device.partition(":")[2]
    if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
        return f"bench/gpu.py: --device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
    return None


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def bench_runtime(model, args, rows: list) -> None:
    import torch

    from edgediff.runtime.request import GenerationRequest
    from edgediff.runtime.split import generate

    backend = model.backend
    side = model.image_size // model.vae_scale_factor
    x = torch.randn((2, model.latent_channels, side, side), generator=torch.Generator().manual_seed(0))
    x = x.to(model.device, model.torch_dtype())
    conditioning = backend.condition(["a photo of a dog"] * 2)
    t = torch.full((2,), 500, device=model.device)
    times = []
    for i in range(args.repeats + 2):  # two warm-up calls (CUDA kernels, cuDNN autotuning)
        synchronize(model.device)
        start = time.perf_counter()
        backend.predict(x, t, conditioning)
        synchronize(model.device)
        if i >= 2:
            times.append(time.perf_counter() - start)
    rows.append(("runtime", "denoiser call, batch 1 guided (2 rows)", 1000 * float(np.median(times)), "ms"))
    request = GenerationRequest("a photo of a dog", steps=args.steps, seed=0)
    split = args.steps // 2
    generate(request, model, split=split)  # warm-up
    synchronize(model.device)
    start = time.perf_counter()
    result = generate(request, model, split=split)
    synchronize(model.device)
    total = time.perf_counter() - start
    rows.append(("runtime", f"{args.steps}-step generation, split {split} (edge, payload, local, decode)", total, "s"))
    rows.append(("runtime", "  of it: edge part + payload", result.edge_s, "s"))
    rows.append(("runtime", "  of it: local part + VAE decode", result.local_s, "s"))
    rows.append(("runtime", "payload (latent + scheduler state)", result.payload_bits / 8 / 1024, "KiB"))


def bench_executor(model, args, rows: list) -> tuple[float, float]:
    from bench_runtime import paired_step_s  # bench/ is the script's directory

    from edgediff.runtime.calibrate import CalibrationConfig, fit_linear

    config = CalibrationConfig(batches=args.batches, repeats=args.repeats, warmup=2)
    executor_s = []
    for b in args.batches:
        step, ideal = paired_step_s(model, b, config)
        executor_s.append(step)
        rows.append(
            (
                "executor",
                f"executor step, batch {b} (executor / bare denoiser)",
                1000 * step,
                f"ms ({ideal / step:.0%})",
            )
        )
        rows.append(("executor", f"  member-steps/s, batch {b}", b / step, "1/s"))
    k, h, r2 = fit_linear(args.batches, executor_s)
    rows.append(("executor", f"fit L(b) = k b + h: k (R^2 {r2:.3f})", 1000 * k, "ms"))
    rows.append(("executor", "fit L(b) = k b + h: h", 1000 * h, "ms"))
    return k, h


def bench_workers(model, args, rows: list, k: float, h: float) -> None:
    import torch

    from edgediff.runtime.calibrate import CalibrationConfig, calibrate_workers

    workers = args.workers or (torch.cuda.device_count() if model.device.startswith("cuda") else 1)
    config = CalibrationConfig(batches=args.batches, repeats=args.repeats, warmup=2)
    start = time.perf_counter()
    profile = calibrate_workers(model, [workers], config)
    rows.append(("workers", f"G = {workers}: pool start + calibration wall time", time.perf_counter() - start, "s"))
    rows.append(("workers", f"G = {workers}: k_e (in-process k {1000 * k:.2f} ms)", 1000 * profile.k, "ms"))
    rows.append(("workers", f"G = {workers}: h_e (in-process h {1000 * h:.2f} ms)", 1000 * profile.h, "ms"))


def bench_service(model, args, rows: list, k: float, h: float) -> None:
    from edgediff.runtime.request import GenerationRequest
    from edgediff.service.client import EdgeClient, request_edge
    from edgediff.service.config import ServiceConfig
    from edgediff.service.engine import EdgeEngine
    from edgediff.service.server import ServiceThread

    # edge profile from the executor fit (no second calibration; a noisy fit's negative part clipped);
    # no latent cache: every request computes
    profile = (max(k, 0.0), max(h, 1e-4))
    config = ServiceConfig(
        model=model.name, device=model.device, window_s=0.2, b_max=16, cache_gb=0, gpus=1, edge_profile=profile
    )
    engine = EdgeEngine(config, model=model)
    device_step = 20 * sum(profile)  # a device 20x slower per step than the edge's batch-1 step: offloading pays

    def client(index: int) -> list:
        answers = []
        with EdgeClient(service.url) as edge:
            for r in range(args.requests):
                request = GenerationRequest(f"a photo of a dog, variant {index}.{r}", steps=args.steps, seed=r)
                answers.append(request_edge(edge, request, model, alpha=2.0, profile=(device_step, 0.0)))
        return answers

    with ServiceThread(engine) as service:
        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            answers = [a for batch in pool.map(client, range(args.clients)) for a in batch]
        wall = time.perf_counter() - start
    latencies = np.array([a.elapsed_s for a in answers])
    granted = [a for a in answers if a.status.get("granted")]
    offloaded = sum(a.status.get("offloaded_steps") or 0 for a in granted)
    what = f"{args.clients} clients x {args.requests} requests, N = {args.steps}"
    rows.append(("service", f"{what}: granted", len(granted), f"of {len(answers)}"))
    rows.append(("service", "edge member-steps/s (offloaded steps / wall)", offloaded / wall, "1/s"))
    rows.append(("service", "latency to the edge's answer, p50", float(np.percentile(latencies, 50)), "s"))
    rows.append(("service", "latency to the edge's answer, p95", float(np.percentile(latencies, 95)), "s"))


def main(argv=None) -> int:
    args = parse_args(argv)
    why = cuda_missing(args.device)
    if why:
        print(why, file=sys.stderr)
        return 2
    import torch

    from edgediff.runtime.models import ModelSpec, load_model

    source = "tiny" if args.tiny else "arch:sd15"
    model = load_model(ModelSpec(source, device=args.device, dtype=args.dtype))
    card = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    rows: list = []
    bench_runtime(model, args, rows)
    k, h = bench_executor(model, args, rows)
    bench_workers(model, args, rows, k, h)
    bench_service(model, args, rows, k, h)
    size = model.image_size
    print(
        f"bench/gpu.py: {source} at {size}x{size}, {args.dtype}, on {args.device} ({card}), torch {torch.__version__}"
    )
    width = max(len(what) for _, what, _, _ in rows)
    for bench, what, value, unit in rows:
        print(f"{bench:<9} {what:<{width}} {value:>11.3f} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
