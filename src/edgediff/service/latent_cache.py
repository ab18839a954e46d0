"""The edge's cache of reusable early-step latents (the Part B reuse rule of
docs/caching-model.md, on real latents).

An entry is the latent of a request after ``m`` denoising steps (``1 <= m <= S*``), keyed by
its prompt's embedding. A later request of the same step count and latent shape may start
from it if ``sim(prompt, entry prompt) >= theta(m)``, with
``theta(m) = theta_min + (1 - theta_min)(m - 1)/(S* - 1)`` (:func:`edgediff.cache.model.theta`):
early, noisier latents are shared by more prompts, the last reusable step needs (near)
identical prompts. Among the usable entries the one with the most steps done wins (it saves
the most edge work), ties by similarity, then the entry stored first. Capacity is in bytes
(latent + embedding); eviction by a usage rule of :mod:`edgediff.cache.eviction`: ``lcbfu``
(the Part B store's rule), ``lru`` or ``lfu``. Thread-safe: the engine thread writes it,
``/metrics`` and the status page read sizes.

Index (docs/service.md, "The latent cache"): entries of one ``(N, latent shape)`` form a
group. A group keeps one embedding row per distinct prompt embedding (a request stores up to
``S*`` steps under the same embedding), in float32 blocks of :data:`BLOCK` rows with a free
list, and a ``(row, step) -> entry`` table; the latents live in preallocated blocks of one
tensor per group. A lookup finds the rows whose similarity to the query is at least
``theta_min`` (the candidates), then does array work on those few rows. Below
:data:`INDEX_ROWS` live rows the candidates come from one exact matrix-vector product over
the group's rows; from there on (with ``faiss`` installed, the ``index`` extra) from an
inverted-file index of float16 rows (faiss ``IndexIVFScalarQuantizer``, inner product) kept
beside the rows — trained on a thread of its own when the group reaches that size, the exact
product answering meanwhile, the rows made and freed during the build applied when the
search takes it —, whose candidates' similarities are then computed exactly from the float32
rows: the reuse rule is applied exactly, but a row the index does not probe is missed
(docs/service.md gives the measured agreement with exact search). The similarities a peek computed are kept until the
group's rows change, so the lookup that follows for the same embedding takes no product.
Rows whose similarity is at least :attr:`LatentCache.DUPLICATE` are linked when a row is
made, so storing another step of a known embedding needs no product. Eviction keys sit in a
heap (stale keys are skipped and the heap is rebuilt when it doubles), so an eviction is
``O(log n)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import logging
import threading
from dataclasses import dataclass, field

import numpy as np

from edgediff.cache.eviction import USAGE_RULES, check_rule, sort_key
from edgediff.cache.model import theta

BLOCK = 4096  # rows (embeddings) or entries (latents) per allocated block: growing never copies
# live rows from which a group's candidates come from the approximate index: an exact product
# over this many 384-d rows takes ~0.8 ms on one core (bench/bench_latent_cache.py)
INDEX_ROWS = 16384
INDEX_LISTS = 1024  # inverted lists, trained once on the rows present at INDEX_ROWS
INDEX_PROBES = 64  # lists searched per query (bench/bench_latent_cache.py measures the agreement)
# the index holds float16 rows: each component off by at most 2^-11 of itself, so a product
# of unit vectors by at most 2^-11 ~ 4.9e-4 (the candidates' similarities are then exact)
INDEX_MARGIN = 1e-3
PEEKS = 4096  # kept peek results per cache (dropped all at once beyond that)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheHit:
    state: object = field(repr=False)  # LatentState with split N - step, a copy of the stored latent
    step: int  # m, denoising steps done
    similarity: float


@dataclass(frozen=True)
class CachedEntry:
    """What one stored entry is (:meth:`LatentCache.entries`); not the latent itself."""

    prompt: str
    step: int
    steps: int
    shape: tuple[int, ...]
    uses: int
    last_used: int
    nbytes: int


def _grow(array: np.ndarray, size: int, fill) -> np.ndarray:
    """``array`` with at least ``size`` rows (doubling), new rows set to ``fill``."""
    if len(array) >= size:
        return array
    grown = np.full((max(size, 2 * len(array), 16), *array.shape[1:]), fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


class _IndexBuild:
    """One IVF index trained and filled on a snapshot of a group's live rows, on a daemon thread
    (faiss releases the interpreter lock while it trains). ``touched``: the rows made or freed
    since the snapshot, noted by the group (under the cache's lock) and brought up to date
    when the group adopts the index."""

    def __init__(self, dim: int, blocks: list, n_rows: int, free_rows: list):
        self.rows = None  # the snapshot's live rows: the index's ids once built
        self.index = None
        self.touched: set[int] = set()
        self.done = threading.Event()
        threading.Thread(
            target=self._run, args=(dim, blocks, n_rows, free_rows), name="edgediff-index", daemon=True
        ).start()

    def _run(self, dim: int, blocks: list, n_rows: int, free_rows: list) -> None:
        try:
            import faiss

            self.rows = np.setdiff1d(np.arange(n_rows), free_rows)
            vectors = np.concatenate(blocks)[self.rows]
            index = faiss.IndexIVFScalarQuantizer(
                faiss.IndexFlatIP(dim), dim, INDEX_LISTS, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
            )
            index.cp.min_points_per_centroid = 1  # fewer rows per list than faiss asks for: fine here, no warning
            index.cp.seed = 0
            index.train(vectors)
            index.set_direct_map_type(faiss.DirectMap.Hashtable)  # remove_ids by row without a scan
            index.nprobe = INDEX_PROBES
            index.add_with_ids(vectors, self.rows.astype(np.int64))
            self.index = index
        except Exception:  # a failed build costs speed, never a lookup
            log.exception("building the latent cache's approximate index failed; exact search stays")
        finally:
            self.done.set()


class _Group:
    """The entries of one ``(N, latent shape)``: embedding rows, entry slots, latent blocks."""

    def __init__(self, gid: int, steps: int, shape: tuple, dim: int, latent_dtype):
        self.gid, self.steps, self.shape, self.dim, self.latent_dtype = gid, steps, shape, dim, latent_dtype
        # rows: one per distinct embedding
        self.emb_blocks: list[np.ndarray] = []
        self.n_rows = 0  # rows ever used (the high-water mark); free ones are in free_rows
        self.free_rows: list[int] = []
        self.refs = np.zeros(0, np.int64)  # entries per row
        self.slot_at = np.full((0, 1), -1, np.int64)  # (row, step) -> entry slot, -1: none
        self.row_of: dict[bytes, int] = {}  # embedding digest -> row
        self.digest: dict[int, bytes] = {}  # row -> its digest in row_of
        self.near: dict[int, set[int]] = {}  # row -> rows with similarity >= DUPLICATE
        self.index = None  # faiss IVF index over the live rows (ids = rows), built at INDEX_ROWS
        self._build: _IndexBuild | None = None  # the index being built in the background
        self.rows_version = 0  # bumped when a row is made or freed: kept peeks are then stale
        # slots: one per entry
        self.lat_blocks: list = []
        self.n_slots = 0
        self.free_slots: list[int] = []
        ints = ("row", "step", "split", "uses", "last_used", "seq", "version", "nbytes")
        for name in ints:
            setattr(self, name, np.zeros(0, np.int64))
        self.requests: list = []  # the GenerationRequest that made each entry
        self.prompts: list = []
        self.scheduler: list = []  # (class, config) of each entry, interned in self.schedulers
        # what else each entry's LatentState carries: (schedule_steps, scheduler_state, generator_state)
        self.carry: list = []
        self.schedulers: list[tuple[str, dict]] = []
        self.count = 0

    # ------------------------------------------------------------------ rows
    def embedding(self, row: int) -> np.ndarray:
        return self.emb_blocks[row // BLOCK][row % BLOCK]

    @property
    def live_rows(self) -> int:
        return self.n_rows - len(self.free_rows)

    def similarities(self, query: np.ndarray) -> np.ndarray:
        """``rows @ query`` over every row ever used (free rows are zero and own no entry)."""
        parts = [
            block[: self.n_rows - start] @ query for start, block in zip(range(0, self.n_rows, BLOCK), self.emb_blocks)
        ]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def candidates(self, query: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, similarities)`` of the rows with ``row @ query >= floor``, similarities in
        float32 from the rows; exact below :data:`INDEX_ROWS` live rows (or without faiss, or
        while the index is being built), from the index's candidates above."""
        if self.index is None and self._build is None and self.live_rows >= INDEX_ROWS:
            self.build_index()
        if self._build is not None and self._build.done.is_set():
            self.adopt_index()
        if not self.index or self.live_rows < INDEX_ROWS:
            sims = self.similarities(query)
            rows = np.flatnonzero(sims >= floor)
            return rows, sims[rows]
        _, _, found = self.index.range_search(query[None], floor - INDEX_MARGIN)
        rows = np.sort(found)
        if not rows.size:
            return rows, np.zeros(0, np.float32)
        sims = np.stack([self.embedding(r) for r in rows]) @ query
        keep = sims >= floor
        return rows[keep], sims[keep]

    def build_index(self) -> None:
        """Start building the IVF index over the live rows on a thread of its own (k-means on
        them: 0.5–1.5 s once per group at 16k 384-d rows, which would stall the engine thread);
        the exact product answers until :meth:`adopt_index` takes it. Nothing if faiss is not
        installed (the exact product stays)."""
        try:
            import faiss  # noqa: F401 - the build thread uses it
        except ImportError:
            log.warning(
                "latent cache group (N=%d, %s) has %d embedding rows; exact search from here on costs more "
                "than 1 ms per lookup (pip install 'edgediff[index]' for the approximate index)",
                self.steps,
                self.shape,
                self.live_rows,
            )
            self.index = False  # asked once
            return
        # the thread copies the rows (tens of ms at 16k rows); a row made or freed meanwhile is
        # touched, so whatever the copy read of it is replaced when the index is taken
        self._build = _IndexBuild(self.dim, list(self.emb_blocks), self.n_rows, list(self.free_rows))

    def adopt_index(self, timeout: float | None = None) -> None:
        """Take the index built in the background (waiting up to ``timeout`` s for it), with the
        rows made and freed since its snapshot brought up to date."""
        build = self._build
        if build is None or not build.done.wait(timeout):
            return
        self._build = None
        if build.index is None:  # the build failed: exact search from here on
            self.index = False
            return
        # each row touched since the snapshot: out of the index with its snapshot vector, back
        # in with its vector now if it is live now (its last change made it)
        touched = np.array(sorted(build.touched), np.int64)
        if touched.size:
            build.index.remove_ids(touched[np.isin(touched, build.rows)])
            live = touched[np.isin(touched, self.free_rows, invert=True)]
            if live.size:
                build.index.add_with_ids(np.stack([self.embedding(r) for r in live]), live)
        self.index = build.index
        log.info(
            "latent cache group (N=%d, %s): approximate index over %d rows", self.steps, self.shape, self.live_rows
        )

    def new_row(self, embedding: np.ndarray, digest: bytes | None, near: set[int], width: int) -> int:
        if self.free_rows:
            row = self.free_rows.pop()
        else:
            row = self.n_rows
            self.n_rows += 1
            if row // BLOCK == len(self.emb_blocks):
                self.emb_blocks.append(np.zeros((BLOCK, self.dim), np.float32))
            self.refs = _grow(self.refs, self.n_rows, 0)
        if width > self.slot_at.shape[1]:
            extra = np.full((len(self.slot_at), width - self.slot_at.shape[1]), -1, np.int64)
            self.slot_at = np.concatenate([self.slot_at, extra], axis=1)
        self.slot_at = _grow(self.slot_at, self.n_rows, -1)
        self.embedding(row)[:] = embedding
        self.rows_version += 1
        if self.index:
            self.index.add_with_ids(self.embedding(row)[None], np.array([row], np.int64))
        elif self._build is not None:
            self._build.touched.add(row)
        if digest is not None and digest not in self.row_of:
            self.row_of[digest] = row
            self.digest[row] = digest
        if near:
            self.near[row] = set(near)
            for other in near:
                self.near.setdefault(other, set()).add(row)
        return row

    def release_row(self, row: int) -> None:
        digest = self.digest.pop(row, None)
        if digest is not None:
            del self.row_of[digest]
        for other in self.near.pop(row, ()):
            self.near[other].discard(row)
            if not self.near[other]:
                del self.near[other]
        self.embedding(row)[:] = 0
        self.slot_at[row] = -1
        self.free_rows.append(row)
        self.rows_version += 1
        if self.index:
            self.index.remove_ids(np.array([row], np.int64))
        elif self._build is not None:
            self._build.touched.add(row)

    # ------------------------------------------------------------------ slots
    def latent(self, slot: int):
        return self.lat_blocks[slot // BLOCK][slot % BLOCK]

    def new_slot(self) -> int:
        import torch

        if self.free_slots:
            return self.free_slots.pop()
        slot = self.n_slots
        self.n_slots += 1
        if slot // BLOCK == len(self.lat_blocks):
            self.lat_blocks.append(torch.empty((BLOCK, *self.shape[1:]), dtype=self.latent_dtype))
        for name in ("row", "step", "split", "uses", "last_used", "seq", "version", "nbytes"):
            setattr(self, name, _grow(getattr(self, name), self.n_slots, 0))
        for name in ("requests", "prompts", "scheduler", "carry"):
            getattr(self, name).append(None)
        return slot

    def scheduler_index(self, scheduler_class: str, config: dict) -> int:
        """One shared copy of each scheduler (class, config): the executor makes a new config
        dict per member, a few KB each."""
        for i, (cls, cfg) in enumerate(self.schedulers):
            if cls == scheduler_class and cfg == config:
                return i
        self.schedulers.append((scheduler_class, config))
        return len(self.schedulers) - 1


class LatentCache:
    # similarity at which a new entry counts as a duplicate of one already stored at its step
    DUPLICATE = 0.999

    def __init__(self, capacity_bytes: int, theta_min: float = 0.8, eviction: str = "lcbfu"):
        self.capacity_bytes = int(capacity_bytes)
        self.theta_min = theta_min
        self.eviction = check_rule(eviction, USAGE_RULES)
        self._groups: dict[tuple, _Group] = {}
        self._by_id: list[_Group] = []
        self._heap: list[tuple] = []  # (*sort key, seq, version, group id, slot); stale items skipped
        self._count = 0
        self._bytes = 0
        self._clock = 0  # logical time: one tick per lookup or insert
        self._seq = 0  # insertion order: the eviction tie-break
        self._lock = threading.Lock()
        self._peeked: dict[tuple, tuple] = {}  # (group id, embedding digest) -> (rows version, rows, sims)
        self.evictions = 0
        if self.enabled:  # load faiss now (tens of ms, under the interpreter lock), not on the engine thread later
            with contextlib.suppress(ImportError):
                import faiss  # noqa: F401

    @property
    def enabled(self) -> bool:
        return self.capacity_bytes > 0

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return self._count

    def entries(self) -> list[CachedEntry]:
        """The stored entries in insertion order (for inspection and tests)."""
        with self._lock:
            found = []
            for g in self._by_id:
                for slot in range(g.n_slots):
                    if g.requests[slot] is not None:
                        found.append(
                            (
                                int(g.seq[slot]),
                                CachedEntry(
                                    g.prompts[slot],
                                    int(g.step[slot]),
                                    g.steps,
                                    g.shape,
                                    int(g.uses[slot]),
                                    int(g.last_used[slot]),
                                    int(g.nbytes[slot]),
                                ),
                            )
                        )
            return [entry for _, entry in sorted(found, key=lambda item: item[0])]

    def _find(self, embedding: np.ndarray, steps: int, shape: tuple, max_step: int, reusable_steps: int):
        """``(group, slot, step, similarity)`` of the best usable entry with at most ``max_step``
        steps done, or ``None``; changes nothing (the caller holds the lock)."""
        g = self._groups.get((steps, tuple(shape)))
        if g is None or not g.count:
            return None
        top = min(max_step, reusable_steps, g.slot_at.shape[1] - 1)
        if top < 1:
            return None
        need = theta(np.arange(reusable_steps + 1), reusable_steps, self.theta_min)[1 : top + 1] - 1e-6
        query = np.ascontiguousarray(embedding, np.float32).reshape(-1)
        rows, sims = self._candidates(g, query, _digest(query))
        if not rows.size:
            return None
        slots = g.slot_at[rows, 1 : top + 1]
        usable = (slots >= 0) & (sims[:, None] >= need)
        which, column = np.nonzero(usable)
        if not which.size:
            return None
        slot_of, step_of, sim_of = slots[which, column], column + 1, sims[which]
        # most steps done, then most similar, then stored first
        best = np.lexsort((g.seq[slot_of], -sim_of, -step_of))[0]
        return g, int(slot_of[best]), int(step_of[best]), float(sim_of[best])

    def _candidates(self, g: _Group, query: np.ndarray, digest: bytes) -> tuple[np.ndarray, np.ndarray]:
        """The group's rows at least ``min(theta_min, DUPLICATE)`` similar to ``query`` (every
        row a lookup or a duplicate check can use), and their similarities. Kept until the
        group's rows change: a window peeks every queued request, then its granted ones look up
        with nothing stored or evicted in between, so their lookups reuse the peek."""
        key = (g.gid, digest)
        kept = self._peeked.get(key)
        if kept is not None and kept[0] == g.rows_version:
            return kept[1], kept[2]
        rows, sims = g.candidates(query, min(self.theta_min, self.DUPLICATE) - 1e-6)
        if len(self._peeked) >= PEEKS:
            self._peeked.clear()
        self._peeked[key] = (g.rows_version, rows, sims)
        return rows, sims

    def wait_index(self, timeout: float | None = None) -> None:
        """Wait for the approximate indexes being built and take them now (tests and
        benchmarks; the engine never waits: its next search takes a finished one)."""
        for g in list(self._by_id):
            build = g._build
            if build is not None:
                build.done.wait(timeout)
        with self._lock:
            for g in self._by_id:
                g.adopt_index(0)

    def peek(self, embedding: np.ndarray, steps: int, shape: tuple, max_step: int, reusable_steps: int) -> int:
        """Steps done by the entry :meth:`lookup` would return (0: none), without using it: no
        usage statistics move, so a window can be decided with the cache in view."""
        with self._lock:
            found = self._find(embedding, steps, shape, max_step, reusable_steps)
            return 0 if found is None else found[2]

    def explain_miss(self, embedding: np.ndarray, steps: int, shape: tuple, max_step: int, reusable_steps: int) -> str:
        """Why :meth:`lookup` found no usable entry (the reuse rule that refused it), in a line."""
        with self._lock:
            g = self._groups.get((steps, tuple(shape)))
            if g is None or not g.count:
                return f"nothing cached for {steps}-step requests (an entry serves only requests of its step count)"
            top = min(max_step, reusable_steps)
            if top < 1:
                return "the edge runs none of this request's first reusable steps"
            query = np.ascontiguousarray(embedding, np.float32).reshape(-1)
            rows, sims = self._candidates(g, query, _digest(query))
            if not rows.size:
                return f"no cached prompt is similar enough (each needs similarity >= theta_min = {self.theta_min:g})"
            best = int(np.argmax(sims))
            stored = np.flatnonzero(g.slot_at[rows[best], 1:] >= 0) + 1
            need = theta(stored, reusable_steps, self.theta_min)
        if stored.size and stored.min() > top:
            return (
                f"the closest cached prompt (similarity {sims[best]:.3f}) has steps {stored.min()}+ stored; "
                f"this request reuses at most step {top} (its edge steps, S* = {reusable_steps})"
            )
        return (
            f"the closest cached prompt has similarity {sims[best]:.3f}, below theta(m) of each of its stored steps "
            f"m (theta({int(stored[0])}) = {need[0]:.3f}; theta rises from {self.theta_min:g} at m = 1 to 1 at S*)"
        )

    def lookup(self, embedding: np.ndarray, steps: int, shape: tuple, max_step: int, reusable_steps: int):
        """The best usable entry with at most ``max_step`` steps done, or ``None``."""
        from edgediff.runtime.request import LatentState

        with self._lock:
            self._clock += 1
            found = self._find(embedding, steps, shape, max_step, reusable_steps)
            if found is None:
                return None
            g, slot, step, similarity = found
            g.uses[slot] += 1
            g.last_used[slot] = self._clock
            self._push(g, slot)
            cls, config = g.schedulers[g.scheduler[slot]]
            latent = g.latent(slot).unsqueeze(0).clone()
            state = LatentState(latent, g.requests[slot], int(g.split[slot]), cls, config, *_carried(g.carry[slot]))
            return CacheHit(state, step, similarity)

    def insert(self, embedding: np.ndarray, state, step: int, prompt: str) -> bool:
        """Store ``state`` (``step`` steps done); evicts by the rule; ``False`` if not stored
        (cache off, entry larger than the capacity, or a duplicate already there)."""
        latent = state.latent
        nbytes = int(latent.numel() * latent.element_size()) + int(embedding.nbytes)
        if nbytes > self.capacity_bytes:
            return False
        shape = tuple(latent.shape)
        query = np.ascontiguousarray(embedding, np.float32).reshape(-1)
        digest = _digest(query)
        with self._lock:
            self._clock += 1
            g = self._groups.get((state.steps, shape))
            if g is None:
                g = _Group(len(self._by_id), state.steps, shape, query.size, latent.dtype)
                self._groups[(state.steps, shape)] = g
                self._by_id.append(g)
            if query.size != g.dim:
                raise ValueError(f"embedding has {query.size} dimensions, the cache holds {g.dim}")
            row = g.row_of.get(digest)
            found = None
            # a known unit embedding: its duplicates are linked already (a non-unit one may not
            # even duplicate itself, so it takes the product)
            if row is not None and float(query @ query) >= self.DUPLICATE:
                near = [row, *g.near.get(row, ())]
            else:
                found = self._candidates(g, query, digest)
                near = found[0][found[1] >= self.DUPLICATE]
            if step < g.slot_at.shape[1] and any(g.slot_at[r, step] >= 0 for r in near):
                return False
            while self._bytes + nbytes > self.capacity_bytes:
                self._evict_one()
            row = g.row_of.get(digest)  # eviction may have freed it
            if row is None or step < g.slot_at.shape[1] and g.slot_at[row, step] >= 0:
                # eviction only frees rows (refs 0): the candidates found before still hold
                rows, sims = self._candidates(g, query, digest) if found is None else found
                near_rows = {int(r) for r in rows[sims >= self.DUPLICATE] if g.refs[r] > 0}
                row = g.new_row(query, digest, near_rows, step + 1)
            elif step >= g.slot_at.shape[1]:
                extra = np.full((len(g.slot_at), step + 1 - g.slot_at.shape[1]), -1, np.int64)
                g.slot_at = np.concatenate([g.slot_at, extra], axis=1)
            slot = g.new_slot()
            g.latent(slot).copy_(latent.detach()[0])
            g.row[slot], g.step[slot], g.split[slot], g.nbytes[slot] = row, step, state.split, nbytes
            g.uses[slot], g.last_used[slot], g.seq[slot] = 0, self._clock, self._seq
            g.requests[slot], g.prompts[slot] = state.request, prompt
            g.scheduler[slot] = g.scheduler_index(state.scheduler_class, state.scheduler_config)
            g.carry[slot] = (state.scheduler_state, state.generator_state, state.schedule_steps)
            g.slot_at[row, step] = slot
            g.refs[row] += 1
            g.count += 1
            self._seq += 1
            self._count += 1
            self._bytes += nbytes
            self._push(g, slot)
            return True

    # ------------------------------------------------------------------ eviction
    def _push(self, g: _Group, slot: int) -> None:
        g.version[slot] += 1
        key = sort_key(self.eviction, int(g.last_used[slot]), int(g.uses[slot]), int(g.step[slot]))
        heapq.heappush(self._heap, (*key, int(g.seq[slot]), int(g.version[slot]), g.gid, slot))
        if len(self._heap) > 2 * self._count + 64:
            self._rebuild_heap()

    def _rebuild_heap(self) -> None:
        """Only the current keys (drops stale ones); also after statistics are set directly."""
        heap = []
        for g in self._by_id:
            for slot in range(g.n_slots):
                if g.requests[slot] is not None:
                    key = sort_key(self.eviction, int(g.last_used[slot]), int(g.uses[slot]), int(g.step[slot]))
                    heap.append((*key, int(g.seq[slot]), int(g.version[slot]), g.gid, slot))
        heapq.heapify(heap)
        self._heap = heap

    def _evict_one(self) -> None:
        while True:
            *_, seq, version, gid, slot = heapq.heappop(self._heap)
            g = self._by_id[gid]
            if g.requests[slot] is not None and g.seq[slot] == seq and g.version[slot] == version:
                break
        row, step = int(g.row[slot]), int(g.step[slot])
        g.slot_at[row, step] = -1
        g.refs[row] -= 1
        if not g.refs[row]:
            g.release_row(row)
        g.requests[slot] = g.prompts[slot] = g.scheduler[slot] = g.carry[slot] = None
        g.free_slots.append(slot)
        g.count -= 1
        self._count -= 1
        self._bytes -= int(g.nbytes[slot])
        self.evictions += 1


def _digest(query: np.ndarray) -> bytes:
    return hashlib.blake2b(query.tobytes(), digest_size=16).digest()


def _carried(carry: tuple) -> tuple:
    """An entry's scheduler state, generator state and schedule length, for a new
    ``LatentState``: the state's tensors are copied (a resumed scheduler may change them)."""
    import copy

    scheduler_state, generator_state, schedule_steps = carry
    return copy.deepcopy(scheduler_state), generator_state, schedule_steps


class TenantCaches:
    """The service's latent caches as the window scheduler's cache
    (:class:`~edgediff.service.scheduler.WindowCache`): one cache, or one per tenant (with API
    keys and no cache sharing) splitting the bytes; a request's key is its prompt embedding
    (a request without one neither reads nor writes the cache). Counts hits and misses in the
    metrics and on the status board."""

    def __init__(self, config, metrics=None, board=None, ledger=None):
        owners = config.tenants if config.tenants and not config.cache_sharing else (None,)
        share = config.cache_bytes // len(owners)
        self.caches = {o: LatentCache(share, config.theta_min, config.cache_eviction) for o in owners}
        self.metrics, self.board, self.ledger = metrics, board, ledger
        self.latent_shape: tuple | None = None  # the model's latent shape, set by the engine

    @property
    def first(self) -> LatentCache:
        """The only cache, or the first tenant's."""
        return next(iter(self.caches.values()))

    @property
    def enabled(self) -> bool:
        return self.first.enabled

    def of(self, job) -> LatentCache:
        return self.caches.get(job.tenant, self.first)

    @property
    def capacity_bytes(self) -> int:
        return sum(c.capacity_bytes for c in self.caches.values())

    def usage(self) -> tuple[int, int]:
        """Bytes and entries held by the latent cache(s)."""
        caches = list(self.caches.values())
        return sum(c.bytes_used for c in caches), sum(len(c) for c in caches)

    def peek(self, jobs, reusable) -> list[int]:
        return [
            self.of(job).peek(job.embedding, job.steps, self.latent_shape, r, r) if _cacheable(job) else 0
            for job, r in zip(jobs, reusable)
        ]

    def lookup(self, job, reach: int, reusable: int):
        from edgediff.service.scheduler import Hit

        if job.embedding is None:
            return None
        if not _cacheable(job):
            return Hit(0, miss=OWN_SIZE_OR_SCHEDULER)
        hit = self.of(job).lookup(job.embedding, job.steps, self.latent_shape, reach, reusable)
        tenant = getattr(job, "tenant", None)
        if self.board is not None:
            self.board.lookup(hit is not None, tenant)
        if self.metrics is not None:
            self.metrics.looked_up(tenant, hit is not None)
        counts = None if self.ledger is None else self.ledger.of(tenant)
        if counts is not None:
            if hit is None:
                counts.cache_misses += 1
            else:
                counts.cache_hits += 1
        if hit is None:
            miss = self.of(job).explain_miss(job.embedding, job.steps, self.latent_shape or (), reach, reusable)
            return Hit(0, miss=miss)
        return Hit(hit.step, hit.state)

    def store(self, job, step: int, state) -> None:
        if not _cacheable(job):
            return
        if self.of(job).insert(job.embedding, state, step, job.request.prompt) and self.metrics is not None:
            used, entries = self.usage()
            self.metrics.cache_bytes.set(used)
            self.metrics.cache_entries.set(entries)

    def order(self, job) -> int:
        return 0  # outputs due at the same step are stored in their members' admission order


OWN_SIZE_OR_SCHEDULER = (
    "the cache keeps latents of the model's own size and scheduler; this request sets its size or scheduler"
)


def _cacheable(job) -> bool:
    """A request the cache serves and stores: with an embedding, at the model's native size and
    with its scheduler (a cached latent of another size or schedule would be a wrong start)."""
    request = getattr(job, "request", None)
    if job.embedding is None or request is None:
        return job.embedding is not None
    own = getattr(request, "width", None) is None and getattr(request, "height", None) is None
    return own and getattr(request, "scheduler", None) is None and not getattr(request, "scheduler_options", None)
