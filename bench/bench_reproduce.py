"""Wall time of ``edgediff reproduce all --quick`` figure by figure (issue target: <= 15 minutes).

Run: ``OMP_NUM_THREADS=1 python bench/bench_reproduce.py [--workers N] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from edgediff.reproduce import REGISTRY, reproduce


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=None, help="local processes (default: one per CPU)")
    parser.add_argument("--out", type=Path, default=None, help="keep the figures here (default: a temporary dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        total = 0.0
        for name in REGISTRY:
            start = time.perf_counter()
            files = reproduce(name, out, quick=True, workers=args.workers)
            elapsed = time.perf_counter() - start
            total += elapsed
            print(f"{name:<12} {elapsed:7.1f} s  ({len(files)} files)", flush=True)
        print(f"{'all --quick':<12} {total:7.1f} s  (target <= 900 s)")


if __name__ == "__main__":
    main()
