"""The loaded edge server (docs/caching-model.md, revision 2): egalitarian processor sharing of
``f_es`` over all unfinished edge work, carried across slots."""

from __future__ import annotations

import numpy as np


class EdgeServer:
    """Unfinished edge jobs, each with its remaining work in seconds at the full edge speed."""

    def __init__(self) -> None:
        self.remaining = np.zeros(0)
        self.job = np.zeros(0, dtype=np.int64)

    @property
    def backlog_s(self) -> float:
        return float(self.remaining.sum())

    @property
    def jobs(self) -> int:
        return int(self.remaining.size)

    def add(self, job: np.ndarray, work_s: np.ndarray) -> None:
        """New jobs (ids ``job``) with ``work_s`` seconds of work each, arriving now."""
        self.job = np.concatenate([self.job, np.asarray(job, dtype=np.int64)])
        self.remaining = np.concatenate([self.remaining, np.asarray(work_s, dtype=float)])

    def run(self, duration: float) -> tuple[np.ndarray, np.ndarray]:
        """Serve for ``duration`` seconds (no arrivals); the finished job ids and their finish times,
        in order of finishing, measured from now.

        With no arrivals, job ``i`` finishes at ``sum_j min(r_i, r_j)``; jobs still running have
        each received the same service ``a``, the time left over after the finished ones, shared.
        """
        r = self.remaining
        if r.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        order = np.argsort(r, kind="stable")
        rs = r[order]
        k = rs.size
        finish = np.concatenate([[0.0], np.cumsum(rs)[:-1]]) + (k - np.arange(k)) * rs
        done = finish <= duration
        n_done = int(done.sum())
        if n_done < k:
            served = (duration - rs[:n_done].sum()) / (k - n_done)
            keep = order[n_done:]
            self.remaining, job = r[keep] - served, self.job
            self.job = job[keep]
            return job[order[:n_done]], finish[:n_done]
        job = self.job[order]
        self.remaining, self.job = np.zeros(0), np.zeros(0, dtype=np.int64)
        return job, finish
