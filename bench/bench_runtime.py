"""Runtime benchmark: batched-executor throughput against the bare denoiser, and a generation.

For each batch size b, the executor's denoising steps per second (b members, guidance on,
so the denoiser (for ``tiny`` the UNet) sees 2b rows) is compared with the bare denoiser
call on the same 2b rows (the ideal: no scheduler updates, no batching bookkeeping). Target (issue 6): >= 90 % of ideal
at b >= 4. Then the fitted L(b) = k*b + h and the wall time of a 50-step generation.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bench_runtime.py [--model tiny|PATH|arch:sd15] [--device cpu|cuda]
    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bench_runtime.py --family sdxl|sd3   # tiny random directories

``--family`` builds the tests' tiny random-weight SDXL or SD3 directory (SDXL-shaped UNet with
added conditioning; SD3's flow-matching transformer) and benchmarks it (issue 15's targets:
>= 90 % at b >= 4 for each family, and the 50-step split generation time). The last lines are
the payload sizes at each family's native latent size, with its default scheduler's state.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgediff.runtime.calibrate import CalibrationConfig, filled_executor, fit_linear, time_steps, timed_step
from edgediff.runtime.models import ModelSpec, load_model
from edgediff.runtime.payload import encode_latent
from edgediff.runtime.request import GenerationRequest, LatentState
from edgediff.runtime.schedulers import capture, fresh_scheduler
from edgediff.runtime.split import generate

# native latent shape and default scheduler of each family's released checkpoints
NATIVE = {
    "SD 1.5 (PNDM)": ((1, 4, 64, 64), "PNDMScheduler", dict(skip_prk_steps=True, steps_offset=1)),
    "SD 1.5 (DPM-Solver++ 2M)": ((1, 4, 64, 64), "DPMSolverMultistepScheduler", dict(steps_offset=1)),
    "SDXL (Euler)": ((1, 4, 128, 128), "EulerDiscreteScheduler", dict(timestep_spacing="leading", steps_offset=1)),
    "SD3 (FlowMatchEuler)": ((1, 16, 128, 128), "FlowMatchEulerDiscreteScheduler", dict(shift=3.0)),
}


def native_payload_bytes(shape, scheduler_class: str, config: dict, dtype: str, steps=50, split=25) -> int:
    """Payload bytes of a state at ``split`` of ``steps``: the latent at ``shape`` and the
    scheduler's state after ``steps - split`` steps (stepped with random model outputs)."""
    generator = torch.Generator().manual_seed(0)
    scheduler = fresh_scheduler(scheduler_class, config, steps)
    latent = torch.randn(shape, generator=generator)
    for t in scheduler.timesteps[: len(scheduler.timesteps) - split]:
        if hasattr(scheduler, "scale_model_input"):
            scheduler.scale_model_input(latent, t)  # as a pipeline does (Euler warns otherwise)
        latent = scheduler.step(torch.randn(shape, generator=generator), t, latent).prev_sample
    state = capture(scheduler, fresh_scheduler(scheduler_class, config, steps))
    request = GenerationRequest("a photo of a dog", steps=steps)
    full = dict(scheduler.config)
    latent_state = LatentState(latent, request, split, scheduler_class, full, state, None, len(scheduler.timesteps))
    return len(encode_latent(latent_state, dtype))


def family_directory(family: str, root: Path) -> Path:
    """The tests' tiny random-weight pipeline directory of ``family``, written by diffusers."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "runtime"))
    import runtime_dirs

    builder = {"sd": runtime_dirs.build_sd_directory, "sdxl": runtime_dirs.build_sdxl_directory}
    builder["sd3"] = runtime_dirs.build_sd3_directory
    return builder[family](root / family)


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
    parser.add_argument("--family", choices=("sd", "sdxl", "sd3"), help="a tiny random directory of this family")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="1,2,4,8,16,32")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    batches = tuple(int(b) for b in args.batches.split(","))
    source = args.model
    if args.family:
        source = str(family_directory(args.family, Path(tempfile.mkdtemp(prefix="edgediff-bench-"))))
    model = load_model(ModelSpec(source, device=args.device))
    config = CalibrationConfig(batches=batches, repeats=args.repeats, warmup=2)
    kind = f"{args.family} tiny random directory" if args.family else model.name
    print(
        f"model {kind} ({type(model.backend).__name__}, {model.scheduler_class}), device {args.device}, "
        f"torch threads {torch.get_num_threads()}"
    )
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
    print("payload at native size, 50 steps split at 25 (float32 / float16 bytes):")
    for name, (shape, scheduler_class, config) in NATIVE.items():
        sizes = [native_payload_bytes(shape, scheduler_class, config, dtype) for dtype in ("float32", "float16")]
        print(f"  {name:<26} latent {tuple(shape[1:])}: {sizes[0]:>9,} / {sizes[1]:>9,}")


if __name__ == "__main__":
    main()
