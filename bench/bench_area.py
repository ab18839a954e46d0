"""Edge step time against image size: does a member cost in proportion to its latent area?

The window (edgediff.service.window) scales a member's per-step cost by its latent area over
the model's native one. This times the batched executor's denoising step at batch sizes b
for several image sides and prints, per side, the fitted per-member cost k (L(b) = k b + h)
and its ratio to the native side's k, beside the area ratio the window assumes.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bench_area.py [--model tiny|PATH|arch:sd15] [--sides 16,32,64]
"""

from __future__ import annotations

import argparse
import statistics
import time

from edgediff.runtime.calibrate import fit_linear
from edgediff.runtime.executor import BatchedExecutor
from edgediff.runtime.models import ModelSpec, load_model
from edgediff.runtime.request import GenerationRequest


def step_time(model, side: int, batch: int, repeats: int) -> float:
    executor = BatchedExecutor(model)
    for i in range(batch):
        request = GenerationRequest(f"prompt {i}", steps=repeats + 1, seed=i, width=side, height=side)
        executor.add(i, request, 0)
    executor.step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        executor.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--sides", default="", help="image sides in pixels (default: native x 1, 2, 4)")
    parser.add_argument("--batches", default="1,2,4")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = load_model(ModelSpec(args.model, device=args.device, dtype=args.dtype))
    native = model.image_size
    sides = [int(s) for s in args.sides.split(",")] if args.sides else [native, 2 * native, 4 * native]
    batches = [int(b) for b in args.batches.split(",")]
    print(f"model {model.name} (native {native} px), {args.device} {args.dtype}, batches {batches}")
    print(f"{'side':>6} {'area ratio':>10} {'k (s/member)':>13} {'h (s)':>9} {'k ratio':>8}")
    base = None
    for side in sides:
        times = [step_time(model, side, b, args.repeats) for b in batches]
        k, h, _ = fit_linear(batches, times)
        base = base or k
        print(f"{side:>6} {(side / native) ** 2:>10.2f} {k:>13.5f} {h:>9.5f} {k / base:>8.2f}")


if __name__ == "__main__":
    main()
