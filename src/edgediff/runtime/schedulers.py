"""A member's scheduler, and the scheduler state that travels with a split request.

Any diffusers scheduler can stop after any step and continue elsewhere if everything it
changed while stepping travels with the latent: multistep solvers keep model-output
histories (DPM-Solver++, UniPC, LMS, PNDM), lower-order counters and a step index,
second-order ones the first half of a step (Heun), stochastic ones draw noise from the
request's generator. Rather than list each scheduler's fields, the state is taken
generically: the scheduler's attributes (``__dict__``, minus its config) that differ from
those of a fresh scheduler of the same class and config after ``set_timesteps`` — which is
how the receiving side rebuilds it before restoring them. A value that is neither a tensor,
a NumPy array, a plain scalar nor a list of these (e.g. a Brownian-tree noise sampler) cannot
travel; :func:`capture` says so in one line. See docs/runtime.md.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json

from edgediff.errors import InputError

# scheduler attributes that are not state: the config (rebuilt from the payload's config)
_NOT_STATE = frozenset({"_internal_dict", "config"})


class SchedulerStateError(InputError):
    """A scheduler (class or state) cannot be used for a split request; the message says why."""


def scheduler_type(class_name: str):
    """The diffusers scheduler class named ``class_name``; only scheduler classes are accepted,
    so a payload cannot name arbitrary classes."""
    import diffusers
    from diffusers import SchedulerMixin

    cls = getattr(diffusers, class_name, None) if isinstance(class_name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise SchedulerStateError(f"{class_name!r} is not a diffusers scheduler class")
    return cls


def fresh_scheduler(class_name: str, config: dict, steps: int, device: str = "cpu"):
    """A new scheduler of ``class_name`` with ``config``, its schedule set for ``steps``
    inference steps on ``device`` (as a diffusers pipeline sets it): a copy of a memoized one,
    since building a diffusers scheduler (config registration, signature inspection) costs
    several times a copy, and the edge builds one per request and per payload."""
    return copy.deepcopy(_scheduler_template(class_name, json.dumps(config, sort_keys=True), steps, str(device)))


def from_config(cls, config: dict):
    """``cls.from_config(config)`` without the keys ``cls`` does not take: diffusers would
    ignore them anyway, with a warning each time ("config attributes ... will be ignored"),
    e.g. PNDM's ``skip_prk_steps`` in a config saved after swapping to another scheduler."""
    if _takes_any(cls):
        return cls.from_config(config)
    return cls.from_config({k: v for k, v in config.items() if k in scheduler_options(cls)})


@functools.cache
def _takes_any(cls) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())


@functools.cache
def scheduler_options(cls) -> frozenset:
    """The config options scheduler class ``cls`` takes (its ``__init__`` parameters)."""
    return frozenset(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}


def schedule_length(class_name: str, config: dict, steps: int) -> int:
    """Denoiser calls (model evaluations) of a request of ``steps`` inference steps: the length
    of the scheduler's own timestep schedule (``steps`` for first-order and multistep solvers,
    ``2 steps - 1`` for Heun and KDPM2, ``steps + 1`` for PNDM with its warm-up). The edge plans,
    runs and reports split points in this unit (docs/runtime.md, "One unit")."""
    return len(_scheduler_template(class_name, json.dumps(config, sort_keys=True), steps, "cpu").timesteps)


@functools.lru_cache(maxsize=64)
def _scheduler_template(class_name: str, config: str, steps: int, device: str):
    scheduler = from_config(scheduler_type(class_name), json.loads(config))
    scheduler.set_timesteps(steps, device=device)
    return scheduler


def accepts_generator(scheduler) -> bool:
    """Whether ``scheduler.step`` draws noise (takes a ``generator``), as diffusers pipelines check."""
    return "generator" in _step_parameters(type(scheduler))


def accepts_eta(scheduler) -> bool:
    """Whether ``scheduler.step`` takes ``eta`` (DDIM, TCD, ...), as diffusers pipelines check."""
    return "eta" in _step_parameters(type(scheduler))


@functools.cache
def _step_parameters(cls) -> frozenset:
    return frozenset(inspect.signature(cls.step).parameters)


def capture(scheduler, reference) -> dict:
    """The state of ``scheduler``: its attributes that differ from ``reference`` (a fresh
    scheduler of the same class, config and steps), copied. Raises
    :class:`SchedulerStateError` for a value that cannot travel."""
    state = {}
    ref = reference.__dict__
    for name, value in scheduler.__dict__.items():
        if name in _NOT_STATE or (name in ref and _same(value, ref[name])):
            continue
        _check(type(scheduler).__name__, name, value)
        state[name] = _copy(value)
    return state


def restore(scheduler, state: dict, device: str) -> None:
    """Set ``state`` (from :func:`capture`, possibly decoded from a payload) on a fresh
    ``scheduler``. Tensors go where the fresh scheduler keeps that attribute, else (histories,
    which were ``None`` or empty) to ``device``, the model's."""
    for name, value in state.items():
        if name in _NOT_STATE:
            raise SchedulerStateError(f"scheduler state may not set {name!r}")
        old = scheduler.__dict__.get(name)
        target = old.device if _is_tensor(old) else device
        setattr(scheduler, name, _to(_copy(value), target))


def _is_tensor(value) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _same(a, b) -> bool:
    import numpy as np
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and a.device == b.device
            and torch.equal(a, b)
        )
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _check(cls: str, name: str, value) -> None:
    import numpy as np
    import torch

    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor, np.ndarray, np.generic)):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check(cls, name, item)
        return
    raise SchedulerStateError(
        f"{cls} keeps {name} as a {type(value).__name__}, which cannot travel with a split request"
    )


def _copy(value):
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return copy.deepcopy(value)


def _to(value, device):
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    return value
