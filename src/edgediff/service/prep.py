"""The requests' prompt work, off the engine thread: each request's prompt embedding (the
latent cache's key) and the model's text conditioning, computed on a prep thread as requests
arrive, with memos of recent prompts' embeddings and conditionings: one pair of memos per
tenant (with API keys; the memos' sizes split between them), so whether a prompt is memoized,
and so how fast its request is prepared, depends only on the tenant's own requests."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from edgediff.service.denoiser import name_os_thread
from edgediff.service.embedding import MEMO_BYTES, ConditioningMemo, EmbeddingMemo

log = logging.getLogger(__name__)


class PromptPrep:
    """``submit(job)`` as it arrives, ``wait(jobs)`` before their window is decided. Without
    ``embedder`` (the cache off) only the conditionings are computed."""

    def __init__(self, backend, embedder=None, tenants: tuple[str, ...] = ()):
        self.backend, self.embedder = backend, embedder
        share = max(1, len(tenants))
        self._memos = {
            owner: (EmbeddingMemo(max(1, EmbeddingMemo.LIMIT // share)), ConditioningMemo(MEMO_BYTES // share))
            for owner in tenants or (None,)
        }
        self._lock = threading.Lock()
        self._pending: list = []  # submitted, not yet taken by the prep thread
        self._thread: ThreadPoolExecutor | None = None

    def _memo(self, job) -> tuple[EmbeddingMemo, ConditioningMemo]:
        """The memos of ``job``'s tenant (the only pair without API keys)."""
        return self._memos.get(job.tenant) or next(iter(self._memos.values()))

    def start(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="edgediff-prep", initializer=name_os_thread)

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=False, cancel_futures=True)

    def submit(self, job) -> None:
        """Queue ``job``'s prompt work (nothing before :meth:`start`: :meth:`wait` does it then)."""
        if self._thread is None:
            return
        job.prepared = threading.Event()
        with self._lock:
            self._pending.append(job)
        self._thread.submit(self._prepare_pending)

    def wait(self, jobs: list) -> None:
        """Wait for ``jobs``' prompt work (or do it here for jobs submitted before the start)."""
        self._prepare([job for job in jobs if job.prepared is None])
        for job in jobs:
            if job.prepared is not None:
                job.prepared.wait()

    def _prepare_pending(self) -> None:
        """On the prep thread: every request submitted since the last call, in one batch."""
        with self._lock:
            jobs, self._pending = self._pending, []
        try:
            self._prepare(jobs)
        finally:
            for job in jobs:
                job.prepared.set()

    def _prepare(self, jobs: list) -> None:
        """The requests' prompt work, done once: their embeddings (none if the embedder fails,
        then they run without the cache), in one embedder call, and the model's text encodings
        (none if one fails: the executor then encodes it and fails that member only)."""
        by_memo: dict = {}
        for job in jobs:
            by_memo.setdefault(id(self._memo(job)), []).append(job)
        if self.embedder is not None and jobs:
            try:
                for mine in by_memo.values():
                    memo = self._memo(mine[0])[0]
                    for job, vector in zip(mine, memo.encode(self.embedder, [j.prompt for j in mine])):
                        job.embedding = vector
            except Exception as err:  # a broken embedder must not take the window down: no cache this time
                log.exception("prompt embedding failed; %d requests run without the cache: %s", len(jobs), err)
        for job in jobs:
            try:
                job.conditioning = self._memo(job)[1].get(self.backend, job.request)
            except Exception:
                log.debug("text encoding ahead failed for %s; the executor retries it", job.id, exc_info=True)
