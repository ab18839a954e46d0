"""What the write-ahead journal costs per accepted request: one acceptance line written and
synced as ``EdgeEngine.submit`` does, with ``fsync`` (the default) and without (flushed to
the OS only), on the disk that holds ``--dir``. Prints milliseconds per acceptance.

    PYTHONPATH=src python bench/bench_journal.py [--dir .] [--requests 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from edgediff.service.journal import Journal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("."), help="folder on the disk to measure (default .)")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for fsync in (True, False):
            journal = Journal(Path(folder) / f"journal-{fsync}.jsonl", fsync=fsync)
            times = []
            for _ in range(args.requests):
                start = time.perf_counter()
                journal.accepted(uuid.uuid4().hex, 20)
                journal.sync()
                times.append(time.perf_counter() - start)
            journal.close()
            times.sort()
            print(
                f"{'fsync' if fsync else 'flush only':>10}: median {statistics.median(times) * 1e3:.3f} ms, "
                f"p99 {times[int(0.99 * (len(times) - 1))] * 1e3:.3f} ms per acceptance ({args.requests} requests)"
            )


if __name__ == "__main__":
    main()
