"""Schema fuzz run of the edge service: schemathesis generates requests from the service's
OpenAPI schema (valid and invalid bodies, query parameters, ids) and sends them to the live
service on a loopback port; no response may be a 5xx, every response must match the schema.
This runs the test module tests/service/test_service_schema_fuzz.py with more examples
per operation (the test suite runs 25).

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/fuzz_service.py [--examples 500]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=500, help="generated requests per operation (500)")
    args = parser.parse_args()
    env = {**os.environ, "EDGEDIFF_FUZZ_EXAMPLES": str(args.examples)}
    start = time.perf_counter()
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-rA",
        str(ROOT / "tests/service/test_service_schema_fuzz.py"),
    ]
    result = subprocess.run(command, env=env, cwd=ROOT)
    print(
        f"schema fuzz: {args.examples} examples per operation, {time.perf_counter() - start:.1f} s, "
        f"{'no 5xx and every response matches the schema' if result.returncode == 0 else 'FAILURES (see above)'}"
    )
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
