"""Runtime benchmark: batched-executor throughput against the bare denoiser, and a generation.

For each batch size b, the executor's denoising steps per second (b members, guidance on,
so the denoiser (for ``tiny`` the UNet) sees 2b rows) is compared with the bare denoiser
call on the same 2b rows (the ideal: no scheduler updates, no batching bookkeeping). Target (issue 6): >= 90 % of ideal
at b >= 4. Then the fitted L(b) = k*b + h and the wall time of a 50-step generation.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bench_runtime.py [--model tiny|PATH] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from edgediff.runtime.calibrate import CalibrationConfig, filled_executor, fit_linear, time_steps, timed_step
from edgediff.runtime.models import ModelSpec, load_model
from edgediff.runtime.request import GenerationRequest
from edgediff.runtime.split import generate


def paired_step_s(model, batch: int, config: CalibrationConfig) -> tuple[float, float]:
    """Median seconds of an executor step with ``batch`` guided members and of a bare
    denoiser call on 2*batch rows (the ideal), timed alternately so both see the same load."""
    executor = filled_executor(model, batch, config)
    backend = model.backend
    side = model.image_size // model.vae_scale_factor
    generator = torch.Generator("cpu").manual_seed(0)
    x = torch.randn((2 * batch, model.latent_channels, side, side), generator=generator).to(
        model.device, model.torch_dtype()
    )
    conditioning = backend.condition(["bench"] * (2 * batch))
    t = torch.full((2 * batch,), 500, device=model.device)

    def denoiser_call():
        backend.predict(x, t, conditioning)

    for _ in range(2):
        denoiser_call()
    executor_s, ideal_s = [], []
    for _ in range(config.repeats):
        executor_s.append(timed_step(model, executor))
        ideal_s.append(_timed(model, denoiser_call))
    return float(np.median(executor_s)), float(np.median(ideal_s))


def _timed(model, fn) -> float:
    cuda = model.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bookkeeping_s(model, batch: int, config: CalibrationConfig) -> float:
    """Executor step time with the denoiser replaced by a no-op: the executor's own cost
    (batch assembly, guidance, per-member scheduler updates), measured without the
    denoiser's noise."""
    backend = model.backend
    backend.predict = lambda latents, timesteps, conditioning: torch.zeros_like(latents)  # shadows the method
    try:
        return time_steps(model, batch, config)
    finally:
        del backend.predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="1,2,4,8,16,32")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    batches = tuple(int(b) for b in args.batches.split(","))
    model = load_model(ModelSpec(args.model, device=args.device))
    config = CalibrationConfig(batches=batches, repeats=args.repeats, warmup=2)
    print(f"model {model.name}, device {args.device}, torch threads {torch.get_num_threads()}")
    header = ("batch", "executor s/step", "unet s/step", "exec steps/s", "ideal steps/s", "ratio", "bookkeeping")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (5, 16, 12, 13, 14, 6, 12))))
    executor_s = []
    for b in batches:
        ex, ideal = paired_step_s(model, b, config)
        overhead = bookkeeping_s(model, b, config)
        executor_s.append(ex)
        print(
            f"{b:>5} {ex:>16.5f} {ideal:>12.5f} {b / ex:>13.1f} {b / ideal:>14.1f} {ideal / ex:>6.1%} {overhead:>12.5f}"
        )
    print(
        "ratio = ideal/executor time, timed alternately (still noisy on a shared CPU); "
        "bookkeeping = executor step with a no-op denoiser"
    )
    k, h, r2 = fit_linear(batches, executor_s)
    print(f"fit L(b) = k*b + h: k = {k * 1000:.3f} ms, h = {h * 1000:.3f} ms, R^2 = {r2:.4f}")
    request = GenerationRequest("a photo of a dog", steps=50, seed=0)
    generate(request, model, split=25)  # warm-up
    start = time.perf_counter()
    result = generate(request, model, split=25)
    total = time.perf_counter() - start
    print(
        f"50-step generation (25 edge + 25 local, payload {result.payload_bits} bits): "
        f"{total:.3f} s (edge {result.edge_s:.3f} s, local + decode {result.local_s:.3f} s)"
    )


if __name__ == "__main__":
    main()
