"""Arrivals: generated (Poisson at a rate or along a diurnal curve; users with a device and an
α; Zipf content classes) or read from a trace CSV. Seeded; NumPy arrays sorted by time."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgediff.cache.model import Catalog
from edgediff.core.pai import PaiCurve
from edgediff.core.profiles import GpuProfile
from edgediff.core.scenario import AlphaDistribution, alpha_interval, draw_alpha
from edgediff.twin.config import Site, TwinError, WorkloadConfig, parse_profile

TRACE_COLUMNS = ("time", "user", "prompt_or_class", "alpha", "device")


@dataclass(frozen=True, eq=False)
class Arrivals:
    """One row per request, sorted by ``time`` (seconds from the start): the ``user`` (index
    into ``users``), content class ``cls`` (index into ``catalog``), α, the device's ``k, h``,
    the step count and the prompt (``None``: a class-keyed request with the paper's 216-bit
    prompt)."""

    time: np.ndarray
    user: np.ndarray
    cls: np.ndarray
    alpha: np.ndarray
    k: np.ndarray
    h: np.ndarray
    steps: np.ndarray
    prompts: list | None
    users: tuple[str, ...]
    catalog: Catalog

    def __len__(self) -> int:
        return int(self.time.size)


def _catalog(popularity: np.ndarray, topic: np.ndarray) -> Catalog:
    popularity = popularity / popularity.sum()
    mass = np.bincount(topic, weights=popularity, minlength=int(topic.max()) + 1)
    return Catalog(popularity, topic, mass, np.cumsum(popularity))


def zipf_catalog(config: WorkloadConfig, rng: np.random.Generator) -> Catalog:
    """The Part B catalog: class ``c`` has popularity ``∝ (c + 1)^-s``; topics of equal size,
    assigned at random (as :func:`edgediff.cache.model.make_catalog`)."""
    p = np.arange(1, config.classes + 1, dtype=float) ** -config.zipf_s
    return _catalog(p, rng.permutation(config.classes) % config.topics)


def arrival_times(config: WorkloadConfig, rng: np.random.Generator) -> np.ndarray:
    """Poisson arrival times in ``[0, duration)``; along ``diurnal`` by thinning."""
    curve = np.ones(24) if config.diurnal is None else np.asarray(config.diurnal)
    peak = config.rate * curve.max()
    count = rng.poisson(peak * config.duration_s)
    times = np.sort(rng.uniform(0.0, config.duration_s, count))
    if config.diurnal is not None:
        hour = (times // 3600).astype(np.int64) % 24
        times = times[rng.uniform(size=times.size) * curve.max() < curve[hour]]
    return times


def generate(config: WorkloadConfig, reference: Site, seed: int) -> Arrivals:
    """Seeded arrivals of ``config``. The paper's α distribution is taken for each user's device
    against the ``reference`` site's edge (its ``G``, ``N_hat`` and PAI curve for ``steps``)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7419]))
    names = list(config.device_mix)
    weights = np.array([config.device_mix[n] for n in names], dtype=float)
    profiles = np.array([parse_profile(n) for n in names])
    device = rng.choice(len(names), size=config.users, p=weights / weights.sum())
    uk, uh = profiles[device, 0], profiles[device, 1]
    svc, N = reference.service, config.steps
    pai = PaiCurve(svc.pai_a, svc.pai_b).for_steps(N)
    paper = alpha_interval(uk + uh, svc.gpus, pai, svc.n_hat(N), N, edge=GpuProfile(*svc.edge_profile))
    assert isinstance(config.alpha, AlphaDistribution)  # WorkloadConfig made it one
    ualpha = draw_alpha(config.alpha, rng, config.users, paper)
    catalog = zipf_catalog(config, rng)
    time = arrival_times(config, rng)
    user = rng.integers(0, config.users, size=time.size)
    cls = catalog.sample(rng.uniform(size=time.size))
    return Arrivals(
        time=time,
        user=user,
        cls=cls,
        alpha=ualpha[user],
        k=uk[user],
        h=uh[user],
        steps=np.full(time.size, config.steps, dtype=np.int64),
        prompts=None,
        users=tuple(f"u{i}" for i in range(config.users)),
        catalog=catalog,
    )


def load_trace(path: str | Path, steps: int = 50) -> Arrivals:
    """A trace CSV with the header ``time,user,prompt_or_class,alpha,device``: seconds from the
    start, a user name, an integer content class or a prompt text (the same text is the same
    class), α > 0, and the device (a preset such as ``row5`` or ``"k,h"``). Every request asks
    ``steps`` steps. Raises :class:`TwinError` naming the line of a bad row."""
    path = Path(path)
    try:
        handle = path.open(newline="")
    except OSError as err:
        raise TwinError(f"trace {path}: {err.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(c.strip() for c in header) != TRACE_COLUMNS:
            raise TwinError(f"trace {path}: the first line must be {','.join(TRACE_COLUMNS)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(TRACE_COLUMNS):
                raise TwinError(f"trace {path}, line {line}: expected {len(TRACE_COLUMNS)} fields, got {len(row)}")
            try:
                t, a = float(row[0]), float(row[3])
            except ValueError:
                raise TwinError(f"trace {path}, line {line}: time and alpha must be numbers") from None
            if not (np.isfinite(t) and t >= 0):
                raise TwinError(f"trace {path}, line {line}: time must be a finite number >= 0, got {row[0]}")
            if not (np.isfinite(a) and a > 0):
                raise TwinError(f"trace {path}, line {line}: alpha must be > 0, got {row[3]}")
            try:
                k, h = parse_profile(row[4])
            except TwinError as err:
                raise TwinError(f"trace {path}, line {line}: device: {err}") from None
            if not (k >= 0 and k + h > 0):
                raise TwinError(f"trace {path}, line {line}: device needs k >= 0 and k + h > 0")
            rows.append((t, row[1], row[2], a, k, h))
    if not rows:
        raise TwinError(f"trace {path}: no requests")
    rows.sort(key=lambda r: r[0])
    users = {name: i for i, name in enumerate(dict.fromkeys(r[1] for r in rows))}
    classes: dict[str, int] = {}
    prompts, texts = [], False
    for r in rows:
        key = r[2].strip()
        if not key.isdigit():
            texts = True
        classes.setdefault(key, len(classes))
        prompts.append(r[2])
    cls = np.array([classes[r[2].strip()] for r in rows], dtype=np.int64)
    # every class its own topic: the trace says nothing of similarity between distinct prompts
    counts = np.bincount(cls, minlength=len(classes)).astype(float)
    return Arrivals(
        time=np.array([r[0] for r in rows]),
        user=np.array([users[r[1]] for r in rows], dtype=np.int64),
        cls=cls,
        alpha=np.array([r[3] for r in rows]),
        k=np.array([r[4] for r in rows]),
        h=np.array([r[5] for r in rows]),
        steps=np.full(len(rows), steps, dtype=np.int64),
        prompts=prompts if texts else None,
        users=tuple(users),
        catalog=_catalog(counts, np.arange(len(classes))),
    )


def write_trace(path: str | Path, arrivals: Arrivals) -> Path:
    """Write ``arrivals`` as a trace CSV that :func:`load_trace` reads back (classes as integers
    unless the arrivals carry prompts; devices as ``k,h``)."""
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(TRACE_COLUMNS)
        for i in range(len(arrivals)):
            what = arrivals.prompts[i] if arrivals.prompts is not None else int(arrivals.cls[i])
            device = f"{float(arrivals.k[i])!r},{float(arrivals.h[i])!r}"
            writer.writerow(
                [
                    repr(float(arrivals.time[i])),
                    arrivals.users[arrivals.user[i]],
                    what,
                    repr(float(arrivals.alpha[i])),
                    device,
                ]
            )
    return path
