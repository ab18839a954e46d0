"""The window scheduler: what the edge decides, written once for the service and the twin.

Synchronous and clock-free: every method that acts at a time takes it as an argument, so the
engine (:mod:`edgediff.service.engine`, real time, threads and I/O around this) and the
digital twin (:mod:`edgediff.twin.sim`, simulated time) run the same rules and agree by
construction. It owns

- the request queue and the window clock: windows end at ``phase + j K`` (``j >= 1``); a
  window is decided at the first look at or after its end, and a look is made between
  batched steps (the edge cannot decide in the middle of a step), so the window that is
  decided is the one that ended first after the previous look (``since``);
- each window's decision (:func:`edgediff.service.window.decide_window`): its requests'
  cached depths (a peek that moves no usage statistics), the policy's decision with the slots
  the running batch leaves, one :class:`Answer` per request;
- the cache's part: a granted member's lookup (the deepest usable entry within its own edge
  steps and the reusable bound ``S*``), and the steps after the hit up to that bound that the
  member's run stores, due at the executor's step count (:meth:`step_done`);
- the running set: the members admitted and not yet out of the batch.

It reaches the denoiser through :class:`StepExecutor` and the cache through
:class:`WindowCache`, two small protocols: the engine passes its batched executor and latent
caches, the twin a simulated executor and Part B's class-keyed store.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from edgediff.service.config import SiteConfig
from edgediff.service.window import decide_window, denial_reason, joiners_profile

NO_KEY = "no prompt embedding (the embedder failed): the request neither reads nor writes the cache"
EPS = 1e-9  # seconds: times closer than this are the same instant on the window clock
HISTORY = 16  # recent decided windows from which later windows' members are expected
# The edge's pace (profile_from_steps): the measured seconds of the last PACE_STEPS batched
# steps over their calibrated L(b). A ratio of sums over a window of steps, not a refit of k
# and h: one number is well posed whatever batch sizes ran (a refit needs several, and a
# window of equal batches leaves k and h unidentified), a long step (a window decided during
# it) weighs by its seconds, and the calibration's shape in b is kept. It is applied from
# PACE_MIN_STEPS steps on, and clipped to PACE_CLIP: a single slow step (a page fault, a
# collection) must not triple the profile, nor a run on a calibration made on a busier host
# halve it below what the denoiser alone can do.
PACE_STEPS = 64
PACE_MIN_STEPS = 8
PACE_CLIP = (0.5, 4.0)


class StepExecutor(Protocol):
    """The batched denoiser as the scheduler sees it: its members and how one joins."""

    def __len__(self) -> int:
        """Members in the running batch (those of earlier windows included)."""
        ...

    @property
    def steps(self) -> int:
        """Batched steps started so far, the one in flight included (a member added now
        runs its first step in the next one)."""
        ...

    @property
    def in_flight(self) -> int:
        """Members of a batched step launched and not yet completed (0: none): a member added
        now first waits for it (the engine decides while a step runs; the twin between steps)."""
        ...

    def add(self, job: Any, split: int, start: Any) -> None:
        """Start ``job``'s edge part, from ``start`` (a cache hit's state, or None: noise), to
        run until ``split``; raises if the member cannot start (it then fails alone)."""
        ...


@dataclass(frozen=True)
class Hit:
    """A lookup's answer: the cached depth ``step`` (0: a miss) and the state to start from."""

    step: int
    state: Any = None
    miss: str | None = None  # at step 0: why nothing cached was usable (the reuse rule that refused it)


class WindowCache(Protocol):
    """The edge's cache of intermediate outputs as the scheduler sees it."""

    def peek(self, jobs: Sequence, reusable: Sequence[int]) -> list[int]:
        """Each job's deepest cached step within its ``reusable`` bound, moving no statistics."""
        ...

    def lookup(self, job: Any, reach: int, reusable: int) -> Hit | None:
        """A granted member's use of the deepest entry within ``reach`` steps (counted as a
        use); None if the job has no key into the cache (then nothing of it is stored)."""
        ...

    def store(self, job: Any, step: int, state: Any) -> None:
        """Store ``job``'s output after ``step`` steps."""
        ...

    def order(self, job: Any) -> int:
        """Rank of ``job`` among the outputs due at the same step (stored in rank order)."""
        ...


class StepPace:
    """The edge's measured step seconds over its profile's ``L(b) = k b / G + h``, over the
    last ``steps`` batched steps: ``scale`` (1 until ``min_steps`` were measured; clipped to
    ``clip``). The window's latency model is the profile times ``scale``."""

    def __init__(
        self,
        profile: tuple[float, float],
        steps: int = PACE_STEPS,
        min_steps: int = PACE_MIN_STEPS,
        clip: tuple[float, float] = PACE_CLIP,
    ):
        self.profile, self.steps, self.min_steps, self.clip = profile, steps, min_steps, clip
        self._recent: deque[tuple[int, float, float]] = deque()  # (steps, measured s, calibrated s)
        self.scale = 1.0
        self.measured = 0  # steps observed in all

    def observe(self, members: int, seconds: float, gpus: int = 1, steps: int = 1) -> float:
        """``steps`` batched steps of ``members`` members took ``seconds`` in all; returns the
        scale now."""
        if members <= 0 or steps <= 0 or not math.isfinite(seconds) or seconds < 0:
            return self.scale
        k, h = self.profile
        self.measured += steps
        self._recent.append((steps, seconds, steps * (k * members / gpus + h)))
        count = sum(n for n, _, _ in self._recent)
        while count - self._recent[0][0] >= self.steps:  # the last `steps` (a segment of the twin's whole)
            count -= self._recent.popleft()[0]
        calibrated = sum(c for _, _, c in self._recent)
        if count >= self.min_steps and calibrated > 0:
            low, high = self.clip
            self.scale = min(high, max(low, sum(m for _, m, _ in self._recent) / calibrated))
        return self.scale


@dataclass(frozen=True)
class Window:
    """A window taken from the queue: its number, its start on the clock, its requests."""

    index: int
    start: float
    jobs: list


@dataclass(frozen=True)
class Answer:
    """One request's answer from its window: ``running`` (admitted), ``denied`` (the device
    runs every step) or ``failed`` (``reason``); the decision's fields when one was made.
    ``window_granted`` is how many requests its group (its step count) granted."""

    job: Any
    status: str
    reason: str | None = None
    granted: bool | None = None
    split: int | None = None
    predicted_latency_s: float | None = None
    predicted_pai: float | None = None
    cache_hit_step: int = 0
    window_granted: int = 0
    cache_miss: str | None = None  # a granted request that started from noise: why no cached latent was used
    predicted_handoff_s: float | None = None  # arrival to the latent handed off (latency less the device's steps)
    predicted_edge_s: float | None = None  # decision to the latent handed off (its edge steps and the link)

    def decision(self) -> dict:
        """The fields a status snapshot takes (none when no decision was made)."""
        if self.granted is None:
            return {}
        return {
            "granted": self.granted,
            "split": self.split,
            "predicted_latency_s": self.predicted_latency_s,
            "predicted_pai": self.predicted_pai,
            "cache_hit_step": self.cache_hit_step,
            "cache_miss": self.cache_miss,
            "predicted_handoff_s": self.predicted_handoff_s,
            "predicted_edge_s": self.predicted_edge_s,
        }


@dataclass(frozen=True)
class Decided:
    """A window's outcome: one answer per request (in the window's group order), and the
    errors of the policy on the groups it failed to decide."""

    answers: list[Answer]
    policy_errors: list[Exception]


class WindowScheduler:
    """The queue, window clock, decisions, cache admission and running set of one edge site.

    ``config`` gives ``K``, ``B_max``, ``max_batch``, the queue limit, the cache's reusable
    bound and the instance's constants; ``policy`` decides (``decide(instance) -> Decision``);
    ``edge_profile`` and ``intermediate_bits`` are the edge's calibration and latent size;
    ``phase`` is when the window clock started. With ``config.profile_from_steps`` each window
    is decided with the calibration times the measured pace of the recent steps
    (:meth:`observe_step`, :class:`StepPace`): the policy is exact for that profile. Not
    thread-safe: the engine calls it under its lock or from its one engine thread.
    """

    def __init__(
        self,
        config: SiteConfig,
        policy,
        executor: StepExecutor,
        cache: WindowCache | None = None,
        *,
        edge_profile: tuple[float, float],
        intermediate_bits: int,
        phase: float = 0.0,
    ):
        self.config, self.policy, self.executor, self.cache = config, policy, executor, cache
        self.edge_profile, self.intermediate_bits = edge_profile, intermediate_bits
        self.pace = StepPace(edge_profile)  # the steps' measured pace over the calibration
        self.K, self.phase = config.window_s, phase
        self.queue: list = []
        self.running: dict[str, Any] = {}  # id -> job: admitted, not yet out of the batch
        self._leaves_at: dict[str, int] = {}  # id -> the executor's step count after its last edge step
        # whether a window's prediction counts the members later windows are expected to add
        # (from the recent ones: docs/offloading-model.md, "The running batch")
        self.expect_joiners = True
        self._history: deque[tuple[float, list[int]]] = deque(maxlen=HISTORY)  # (window start, members' edge steps)
        self.windows = 0
        self._captures: list[tuple[int, int, int, int, Any]] = []  # (due step count, rank, step, seq, job)
        self._seq = itertools.count()

    # ------------------------------------------------------------------ the window clock
    def boundary_index(self, t: float) -> int:
        """``j`` of the last window end ``phase + j K`` at or before ``t``."""
        return math.floor((t - self.phase) / self.K + EPS)

    def window_end_after(self, since: float) -> float:
        """The first window end strictly after ``since`` (the first is ``phase + K``)."""
        return self.phase + self.K * max(1, self.boundary_index(since) + 1)

    def due(self, now: float, since: float) -> bool:
        """Whether a look at ``now``, the previous having been at ``since``, decides a window."""
        return now >= self.window_end_after(since)

    # ------------------------------------------------------------------ requests
    def submit(self, *jobs) -> bool:
        """Queue ``jobs`` (one request's images) for the next window, all or none: False if
        they would take the queue past its limit (none queued)."""
        if len(self.queue) + len(jobs) > self.config.queue_limit:
            return False
        self.queue.extend(jobs)
        return True

    def take(self, now: float, since: float | None) -> Window | None:
        """Take the queue as the window that ended first after ``since`` (None: the edge was
        idle, the last window end at or before ``now``); None if nothing is queued."""
        if not self.queue:
            return None
        if since is None:
            end = self.phase + self.K * self.boundary_index(now)
        else:
            end = self.window_end_after(since)
        jobs, self.queue = self.queue, []
        index = self.windows
        self.windows += 1
        return Window(index, end - self.K, jobs)

    # ------------------------------------------------------------------ the edge's pace
    def observe_step(self, members: int, seconds: float, gpus: int = 1, steps: int = 1) -> None:
        """``steps`` batched steps of ``members`` members took ``seconds`` (measured)."""
        self.pace.observe(members, seconds, gpus, steps)

    @property
    def step_scale(self) -> float:
        """The recent steps' measured seconds over the calibrated ``L(b)`` (1 before any)."""
        return self.pace.scale

    @property
    def decision_scale(self) -> float:
        """What windows multiply the calibrated ``k`` and ``h`` by: the measured pace with
        ``profile_from_steps``, else 1."""
        return self.pace.scale if self.config.profile_from_steps else 1.0

    @property
    def decision_profile(self) -> tuple[float, float]:
        """The ``(k, h)`` windows are decided with: the calibration times :attr:`decision_scale`."""
        k, h = self.edge_profile
        scale = self.decision_scale
        return k * scale, h * scale

    # ------------------------------------------------------------------ a window's decision
    def decide(self, window: Window, gpus: int | None = None) -> Decided:
        """Decide ``window`` with ``G = gpus`` (default ``config.gpus``) and admit the granted
        requests into the executor (from their cache hits). A policy that raises fails the
        requests it was deciding: the window's requests of that step count (one instance);
        the window's other step counts are decided as usual."""
        self._peek(window.jobs)
        gpus_now = self.config.gpus if gpus is None else gpus
        joiners = self.expected_joiners(window, gpus_now) if self.expect_joiners else None
        groups = decide_window(
            window.jobs,
            self.config,
            self.policy,
            start=window.start,
            edge_profile=self.decision_profile,
            intermediate_bits=self.intermediate_bits,
            gpus=gpus,
            running=len(self.executor),
            edge_steps_left=self.edge_steps_left(),
            joiners=joiners,
            start_delay=self.step_in_flight_s(gpus_now),
        )
        answers: list[Answer] = []
        errors: list[Exception] = []
        admitted: list[int] = []
        for group in groups:
            if group.error is not None:
                err = group.error
                errors.append(err)
                reason = f"decision failed: {type(err).__name__}: {err}"
                answers.extend(Answer(job, "failed", reason) for job in group.jobs)
                continue
            decision, outcome, instance = group.decision, group.outcome, group.instance
            assert decision is not None and outcome is not None and instance is not None
            b = decision.granted_count
            # the prediction's parts: the device's steps after the hand-off, the wait before the decision
            handoff = outcome.latency - decision.split * instance.local_step_latency
            edge = handoff - instance.waiting_latency
            for i, job in enumerate(group.jobs):
                granted, split = bool(decision.granted[i]), int(decision.split[i])
                answer = Answer(
                    job,
                    "running" if granted else "denied",
                    granted=granted,
                    split=split,
                    predicted_latency_s=float(outcome.latency[i]),
                    predicted_pai=float(outcome.pai[i]),
                    window_granted=b if granted else 0,
                    predicted_handoff_s=float(handoff[i]) if granted else None,
                    predicted_edge_s=float(edge[i]) if granted else None,
                )
                if granted:
                    answers.append(self._admit(answer))
                    admitted.append(max(0, job.steps - split - answers[-1].cache_hit_step))
                else:
                    reason = denial_reason(instance, b, self.config.policy)
                    answers.append(replace(answer, reason=reason))
        self._history.append((window.start, admitted))
        return Decided(answers, errors)

    def expected_joiners(self, window: Window, gpus: int):
        """``f_s``: the members later windows are expected to add to each of this window's edge
        steps (:func:`~edgediff.service.window.joiners_profile`), from the recent windows: the
        members they admitted per window (windows with no request count as 0) and those
        members' edge steps; a later window decides every ``K / L_e(b)`` steps, ``b`` the batch
        now plus that many. None until two windows have been decided."""
        if len(self._history) < 2 or not window.jobs:
            return None
        first = self._history[0][0]
        windows = max(1.0, (window.start - first) / self.K)  # window slots from the first recorded to this one
        steps = [m for _, ms in self._history for m in ms]
        per_window = len([m for m in steps if m > 0]) / windows
        k, h = self.decision_profile
        step_s = k * (len(self.running) + per_window) / gpus + h
        horizon = max(job.steps for job in window.jobs)
        return joiners_profile(per_window, steps, self.K / step_s if step_s > 0 else horizon, horizon)

    def step_in_flight_s(self, gpus: int) -> float:
        """The predicted time of the step in flight, which a member admitted now waits for."""
        members = getattr(self.executor, "in_flight", 0)
        k, h = self.decision_profile
        return k * members / gpus + h if members else 0.0

    def edge_steps_left(self) -> list[int]:
        """Each running member's edge steps still to run after the step in flight (a member
        admitted now runs its first step in the next one): the window's ``r_s``."""
        now = self.executor.steps
        leaves = list(self._leaves_at.items())  # one copy: a front door's load report reads it from its thread
        return [at - now for key, at in leaves if key in self.running and at > now]

    def _peek(self, jobs: list) -> None:
        """Each job's ``cached_steps``: how deep a cached output it could start from, so that
        the decision sees the cache (docs/offloading-model.md, "Cached steps")."""
        if self.cache is None or not jobs:
            return
        reusable = [self.config.reusable_steps(job.steps) for job in jobs]
        for job, depth in zip(jobs, self.cache.peek(jobs, reusable)):
            job.cached_steps = depth

    def _admit(self, answer: Answer) -> Answer:
        """Start a granted member from its best usable cache entry; the steps it runs after
        the hit, up to ``S*`` and within its own edge steps, are due for the cache."""
        job, split = answer.job, answer.split
        assert split is not None
        hit, reach = None, 0
        if self.cache is not None:
            reusable = self.config.reusable_steps(job.steps)
            reach = min(reusable, job.steps - split)
            hit = self.cache.lookup(job, reach, reusable)
        hit_step = 0 if hit is None else hit.step
        miss = None
        if self.cache is not None and not hit_step:
            miss = NO_KEY if hit is None else hit.miss
        try:
            self.executor.add(job, split, None if hit is None else hit.state)
        except Exception as err:
            return replace(answer, status="failed", reason=f"edge could not start: {err}", cache_hit_step=hit_step)
        self.running[job.id] = job
        self._leaves_at[job.id] = self.executor.steps + max(0, job.steps - split - hit_step)
        if hit is not None:
            # stored once the member has run step m: the executor's count then is now's + m - hit
            launched, rank = self.executor.steps, self.cache.order(job)  # type: ignore[union-attr]
            for m in range(hit_step + 1, reach + 1):
                heapq.heappush(self._captures, (launched + m - hit_step, rank, m, next(self._seq), job))
        return replace(answer, cache_hit_step=hit_step, cache_miss=miss)

    # ------------------------------------------------------------------ the running batch
    def step_done(self, steps: int, left: Sequence[str] = (), failed: Sequence[str] = ()) -> list[tuple[Any, int]]:
        """After the executor's ``steps``-th step: the ``(job, m)`` outputs now due for the
        cache (each member that is still running, or left in this step, at its step ``m``;
        in due order; ``failed`` members store nothing more); then ``left`` and ``failed``
        leave the running set."""
        self.drop(failed)
        due = []
        captures = self._captures
        while captures and captures[0][0] <= steps:
            _, _, m, _, job = heapq.heappop(captures)
            if job.id in self.running:
                due.append((job, m))
        self.drop(left)
        return due

    def drop(self, keys) -> list:
        """Take the members ``keys`` out of the running set; returns those that were in it."""
        for key in keys:
            self._leaves_at.pop(key, None)
        return [job for job in (self.running.pop(key, None) for key in keys) if job is not None]

    def store(self, job, step: int, state) -> None:
        """Store a due output (:meth:`step_done`) in the cache."""
        if self.cache is not None:
            self.cache.store(job, step, state)
