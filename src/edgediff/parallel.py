"""Run the independent tasks of a sweep serially, on local processes, or on a Ray cluster
(used by ``offload``, ``twin``, ``service`` and ``reproduce``; depends on none of them).

Tasks are ``(function, args)`` pairs with a module-level ``function`` (so that it pickles);
results come back in task order whatever the order of completion, so a sweep's output does
not depend on how it ran. Local processes use the ``spawn`` start method: the parent may hold
torch's thread pools, which do not survive ``fork``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

Task = tuple[Callable[..., Any], tuple]


class SweepError(RuntimeError):
    """The sweep could not run where it was asked to (e.g. Ray missing or unreachable)."""


def default_workers() -> int:
    return os.cpu_count() or 1


def run_tasks(
    tasks: Sequence[Task],
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list:
    """``[function(*args) for function, args in tasks]``, computed in parallel.

    ``ray_address`` (e.g. ``"127.0.0.1:6379"`` or ``"auto"``) runs the tasks on an existing Ray
    cluster; otherwise ``workers`` local processes (default: one per CPU; 1 runs in-process).
    ``progress(k)`` is called after each task with the number done so far.
    """
    if ray_address is not None:
        return _run_on_ray(tasks, ray_address, progress)
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    results: list = [None] * len(tasks)
    if workers == 1 or len(tasks) <= 1:
        for index, (function, args) in enumerate(tasks):
            results[index] = function(*args)
            if progress:
                progress(index + 1)
        return results

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(function, *args): index for index, (function, args) in enumerate(tasks)}
        for done, future in enumerate(as_completed(futures), start=1):
            results[futures[future]] = future.result()
            if progress:
                progress(done)
    return results


def _run_on_ray(tasks: Sequence[Task], address: str, progress) -> list:
    ray = connect_ray(address)
    remote: dict[Callable[..., Any], Any] = {}
    refs = []
    for function, args in tasks:
        remote.setdefault(function, ray.remote(function))
        refs.append(remote[function].remote(*args))
    pending, done = list(refs), 0
    while pending:
        finished, pending = ray.wait(pending, num_returns=1)
        done += len(finished)
        if progress:
            progress(done)
    return ray.get(refs)


def connect_ray(address: str):
    """The ``ray`` module, connected to the cluster at ``address`` unless this process is
    already (SweepError, one line, if Ray is missing or nobody answers there)."""
    try:
        import ray
    except ImportError:
        raise SweepError("--ray needs Ray: pip install 'edgediff[ray]'") from None
    if not ray.is_initialized():
        _check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise SweepError(f"cannot connect to the Ray cluster at {address!r}: {err}") from None
    return ray


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a ``host:port`` nobody listens on (``ray.init`` would retry for minutes)."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and other forms: let Ray resolve them
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise SweepError(f"cannot connect to the Ray cluster at {address!r}: {err}") from None
