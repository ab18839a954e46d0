"""Issue 8 benchmark: the shipped tiny models against the issue's targets.

Prints (1) the share of the cluster-wide model's samples that the shipped classifier
recognizes as their prompt's digit (target >= 80 %), (2) ``measure-pai --quick``'s wall time
(target <= 5 min), R^2 of the sigmoid fit (target >= 0.9) and whether personalization falls
with offloaded steps, and, with ``--train``, (3) the wall and CPU time of a full
``train-tiny`` into a temporary directory (target <= 20 min).

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bench_pai.py [--samples-per-digit 10] [--train]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from edgediff.personalize.classifier import shipped_classifier
from edgediff.personalize.pai import QUICK_SPLITS, PaiConfig, default_prompts, measure_pai
from edgediff.personalize.train import TrainConfig, recognition_rate, train_tiny
from edgediff.runtime.models import load_model
from edgediff.runtime.tiny import TINY_PERSONAL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples-per-digit", type=int, default=10)
    parser.add_argument("--train", action="store_true", help="also time a full train-tiny (~15 min)")
    args = parser.parse_args()

    classifier = shipped_classifier()
    cluster = load_model("tiny")
    digits = [d for d in range(10) for _ in range(args.samples_per_digit)]
    rate = recognition_rate(cluster, classifier, digits, [10_000 + i for i in range(len(digits))], None, TrainConfig())
    print(f"cluster-wide samples recognized: {100 * rate:.1f} % of {len(digits)} (target >= 80 %)")

    start = time.perf_counter()
    personal = [load_model(name) for name in TINY_PERSONAL]
    result = measure_pai(cluster, personal, default_prompts(), PaiConfig(splits=QUICK_SPLITS, samples=2), classifier)
    summary = result.summary()
    print(
        f"measure-pai --quick: {time.perf_counter() - start:.1f} s (target <= 300 s), "
        f"a = {summary['pai']['a']:.4f}, b = {summary['pai']['b']:.2f}, R^2 = {summary['r2']:.3f} (target >= 0.9), "
        f"personalization falls with offloading: {summary['personalization_falls_with_offloading']}"
    )

    if args.train:
        with tempfile.TemporaryDirectory() as out:
            wall, cpu = time.perf_counter(), time.process_time()
            report = train_tiny(out)
            print(
                f"train-tiny: {time.perf_counter() - wall:.0f} s wall, {time.process_time() - cpu:.0f} s cpu "
                f"(target <= 1200 s wall); samples recognized {100 * report['cluster_recognition']:.1f} %"
            )


if __name__ == "__main__":
    main()
