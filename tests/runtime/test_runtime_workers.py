"""WorkerPool: G denoiser replicas give the single-process outputs; a killed worker's rows re-run."""

import os
import signal

import pytest
import torch

from edgediff.runtime.executor import BatchedExecutor
from edgediff.runtime.models import load_model
from edgediff.runtime.request import GenerationRequest
from edgediff.runtime.workers import WorkerPool, WorkerPoolError


def _run(model, n=5):
    executor = BatchedExecutor(model)
    for i in range(n):
        executor.add(i, GenerationRequest(f"prompt {i}", steps=6, seed=i, guidance_scale=7.5 if i % 2 else 1.0), 0)
    return executor.run()


@pytest.fixture(scope="module")
def model():
    return load_model("tiny")


@pytest.mark.slow
def test_pool_matches_single_process_and_survives_a_killed_worker(model):
    single = _run(model)
    pool = WorkerPool(model.backend, 2)
    try:
        model.workers = pool
        pooled = _run(model)
        diff = max(float((single[k].latent - pooled[k].latent).abs().max()) for k in single)
        assert diff <= 1e-4  # measured 1.04e-5: smaller batches alone move float results this little
        assert all(w.rows > 0 for w in pool.info())
        victim = pool.pids()[1]
        os.kill(victim, signal.SIGKILL)
        again = _run(model)  # the dead worker's shard re-runs on the survivor in the same step
        assert pool.alive == 1 and victim not in pool.pids()
        assert max(float((single[k].latent - again[k].latent).abs().max()) for k in single) <= 1e-4
        os.kill(pool.pids()[0], signal.SIGKILL)
        x = torch.zeros(2, model.latent_channels, 4, 4)
        with pytest.raises(WorkerPoolError):
            pool.predict(x, torch.zeros(2), model.backend.condition(["a", "b"]))
    finally:
        model.workers = None
        pool.close()


def test_bad_worker_counts_are_refused(model):
    for bad in (0, -1, True, 1.5):
        with pytest.raises(WorkerPoolError):
            WorkerPool(model.backend, bad)
