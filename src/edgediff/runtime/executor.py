"""The batched denoising executor: many requests, one denoiser call per step.

Members of a batch may sit at different timesteps (each row of the denoiser batch gets its
own timestep), use guidance or not (a guided member contributes an unconditional and a
conditional row), join at any time — from noise or from an intermediate :class:`LatentState`
(e.g. a cached latent) — and leave as soon as they reach their split point, so the batch
shrinks as in the paper's Fig. 2. Every member owns its scheduler instance and noise
generator: diffusers schedulers keep per-request state (step index, model-output history),
stochastic ones draw noise, and the scheduler update is cheap next to the denoiser. The same
executor runs a single request, so split and unsplit runs, edge and device, share one code
path. Everything that depends on the model family goes through the
model's :class:`~edgediff.runtime.backends.DenoiserBackend`.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field, replace

from edgediff.runtime.backends import Conditioning
from edgediff.runtime.models import DiffusionModel
from edgediff.runtime.request import GenerationRequest, LatentState, RequestError
from edgediff.runtime.schedulers import capture, fresh_scheduler, restore

log = logging.getLogger(__name__)


def initial_state(model: DiffusionModel, request: GenerationRequest) -> LatentState:
    """Pure noise for ``request`` (split = the schedule's length): drawn on the CPU from a
    ``torch.Generator`` seeded with ``request.seed`` — as a diffusers pipeline draws it from
    its ``generator`` — so the same seed gives the same noise on every machine; scaled by the
    scheduler's initial sigma. The same generator then feeds stochastic schedulers' steps."""
    backend = model.backend
    height, width, scheduler_class, scheduler_config = check_request(model, request)
    scheduler = fresh_scheduler(scheduler_class, scheduler_config, request.steps, backend.device)
    shape = (1, backend.latent_channels, height // backend.vae_scale_factor, width // backend.vae_scale_factor)
    noise, _ = _seeded_noise(request.seed, shape)
    latent = backend.initial_latent(noise, scheduler).to(backend.device, backend.torch_dtype())
    steps = len(scheduler.timesteps)
    return LatentState(
        latent,
        request,
        steps,
        scheduler_class,
        scheduler_config,
        schedule_steps=steps,
        latent_space=model.latent_space,
    )


def check_request(model: DiffusionModel, request: GenerationRequest) -> tuple[int, int, str, dict]:
    """``(height, width, scheduler class, scheduler config)`` of ``request`` on ``model``, or
    :class:`RequestError` naming the field it cannot run (a size, the steps, the scheduler)."""
    backend = model.backend
    height, width = request.image_shape(backend.image_size)
    for name, side, given in (("height", height, request.height), ("width", width, request.width)):
        if side % backend.size_multiple:
            name = "size" if given is None and request.size is not None else name
            raise RequestError(
                f"{name} must be a multiple of {backend.size_multiple} for model {model.name!r}, got {side}"
            )
    if request.guidance_rescale and not backend.supports_guidance_rescale:
        raise RequestError(f"guidance_rescale: model {model.name!r} ({type(backend).__name__}) has none in diffusers")
    model.check_steps(request.steps)
    scheduler_class, scheduler_config = request_scheduler(model, request)
    try:
        fresh_scheduler(scheduler_class, scheduler_config, request.steps, backend.device)
    except Exception as err:  # diffusers raises many types for a config it cannot build (NotImplementedError, ...)
        where = "scheduler_options" if request.scheduler_options else "scheduler"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RequestError(
            f"{where}: {scheduler_class} cannot run {request.steps} steps with this config: {first}"
        ) from None
    return height, width, scheduler_class, scheduler_config


def request_calls(model: DiffusionModel, request: GenerationRequest) -> int:
    """``N`` of ``request``: the denoiser calls of its schedule (its steps with its scheduler),
    the unit of split points (docs/runtime.md, "One unit")."""
    from edgediff.runtime.schedulers import schedule_length

    return schedule_length(*request_scheduler(model, request), request.steps)


def request_scheduler(model: DiffusionModel, request: GenerationRequest) -> tuple[str, dict]:
    """The scheduler class and config of ``request``: the model's, or the class it names
    with its config and the request's options (``Scheduler.from_config(config, **options)``,
    as a diffusers user swaps ``pipe.scheduler``). Raises :class:`RequestError` naming
    ``scheduler``/``scheduler_options`` for an unknown class or option."""
    from edgediff.runtime.schedulers import SchedulerStateError, scheduler_options, scheduler_type

    backend = model.backend
    if request.scheduler is None and not request.scheduler_options:
        return backend.scheduler_class, backend.scheduler_config
    name = request.scheduler or backend.scheduler_class
    try:
        cls = scheduler_type(name)
    except SchedulerStateError as err:
        raise RequestError(f"scheduler: {err}") from None
    accepted = scheduler_options(cls)
    unknown = sorted(set(request.scheduler_options) - accepted)
    if unknown:
        raise RequestError(
            f"scheduler_options: {name} has no option {unknown[0]!r} (it has {', '.join(sorted(accepted))})"
        )
    # keys of another class's config would be ignored by from_config (with a warning): leave them out
    config = {k: v for k, v in backend.scheduler_config.items() if k in accepted}
    return name, {**config, **request.scheduler_options}


def _seeded_noise(seed: int, shape: tuple):
    """The request's initial noise and its generator, which has drawn just that noise."""
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32), generator


def uses_guidance(backend, request: GenerationRequest) -> bool:
    """Whether ``request`` runs classifier-free guidance on ``backend``: ``guidance_scale > 1``
    and an ordinary denoiser (a guidance-distilled one takes the scale as an embedding)."""
    return request.guided and backend.guidance_embedding_dim is None


def conditioning_key(backend, request: GenerationRequest) -> tuple:
    """What a request's conditioning depends on (for a memo of conditionings)."""
    embedded = backend.guidance_embedding_dim is not None
    negative = request.negative_prompt if uses_guidance(backend, request) else None
    return request.prompt, negative, request.clip_skip, request.guidance_scale if embedded else None


def request_conditioning(backend, request: GenerationRequest):
    """A member's conditioning rows: its prompt, after its negative prompt when guided; for a
    guidance-distilled (LCM) denoiser also ``timestep_cond``, the embedding of
    ``guidance_scale - 1``, as diffusers' pipelines make it."""
    negative = [request.negative_prompt] if uses_guidance(backend, request) else []
    if request.clip_skip is None:
        conditioning = backend.condition([request.prompt], negative)
    else:
        conditioning = backend.condition([request.prompt], negative, clip_skip=request.clip_skip)
    dim = backend.guidance_embedding_dim
    if dim is None:
        return conditioning
    import torch
    from diffusers import StableDiffusionPipeline

    scale = torch.tensor([request.guidance_scale - 1.0])
    embedding = StableDiffusionPipeline.get_guidance_scale_embedding(None, scale, embedding_dim=dim)  # type: ignore[arg-type]
    embedding = embedding.to(backend.device, backend.torch_dtype())
    return Conditioning({**conditioning.tensors, "timestep_cond": embedding.expand(len(conditioning), dim)})


class GenerationFailed(RequestError):
    """A member's generation failed mid-way; the message says which step and why."""


class NonFiniteLatent(ArithmeticError):
    """A member's latent became non-finite: that member fails (its request gets no image)."""


@dataclass(eq=False)
class _Member:
    key: object
    request: GenerationRequest
    start: LatentState  # where it joined: the scheduler class/config and schedule length
    split: int  # steps left (denoiser calls)
    stop: int  # leave when split reaches this
    scheduler: object  # this member's own scheduler instance
    reference: object  # a fresh scheduler of the same class, config and steps (what the state is relative to)
    generator: object  # torch.Generator feeding stochastic scheduler steps
    seeded: object  # the generator's state right after drawing the request's initial noise
    conditioning: Conditioning  # rows [uncond, cond] when guided, else [cond]
    latent: object = field(repr=False)
    latent_space: dict | None = field(default=None, repr=False)  # the fingerprint of the model stepping it

    @property
    def position(self) -> int:  # index of the next timestep in scheduler.timesteps
        return self.start.steps - self.split

    def state(self) -> LatentState:
        """The member's state now: latent, scheduler state and generator state (omitted while
        the generator has drawn only the initial noise: the receiver re-derives it from the seed)."""
        import torch

        scheduler_state, generator_state = {}, None
        if self.split:  # a finished latent needs nothing to continue
            scheduler_state = capture(self.scheduler, self.reference)
            current = self.generator.get_state()
            generator_state = None if torch.equal(current, self.seeded) else current
        return LatentState(
            self.latent,
            self.request,
            self.split,
            self.start.scheduler_class,
            self.start.scheduler_config,
            scheduler_state,
            generator_state,
            self.start.steps,
            self.latent_space,
        )


@dataclass(frozen=True)
class PendingStep:
    """A launched step (:meth:`BatchedExecutor.launch`): the members that had already reached
    their stop, the launched members' denoiser inputs, and the denoiser call if it runs elsewhere."""

    finished: list
    inputs: dict
    future: object = None


class BatchedExecutor:
    """Runs members' denoising steps on ``model`` as one batch per step.

    ``add`` a member with its stop split; call ``step`` (one batched denoiser call for all
    active members; returns the members that reached their stop) or ``run`` (until empty).
    A member whose step raises leaves the batch alone, the others go on: :meth:`pop_failed`
    returns ``(key, reason)`` of those.
    """

    def __init__(self, model: DiffusionModel):
        self.model = model
        self.backend = model.backend
        self._members: dict[object, _Member] = {}
        self._done: list[tuple[object, LatentState]] = []
        self._failed: list[tuple[object, str]] = []
        self._references: dict[tuple, object] = {}  # (class, config, steps) -> fresh scheduler

    def __len__(self) -> int:
        return len(self._members)

    @property
    def idle(self) -> bool:
        """No member left to step or to hand back (added members already at their stop wait
        for the next :meth:`step`)."""
        return not self._members and not self._done

    @property
    def active(self) -> list:
        return list(self._members)

    def add(
        self, key, request: GenerationRequest, stop: int, start: LatentState | None = None, conditioning=None
    ) -> None:
        """Add member ``key`` that runs until its split is ``stop`` (``stop`` = 0: to the end).

        ``start`` is the state to continue from (default: the request's initial noise); its
        prompt may differ from ``request``'s (a cached latent of a similar prompt), but its
        step count must match. The denoising continues on ``start``'s scheduler: its class,
        config and state (model-output history, step index), and its noise generator.
        ``conditioning``: the request's :func:`request_conditioning`, when computed ahead
        (the service encodes prompts off its engine thread); default: computed here.
        """
        import torch

        if key in self._members:
            raise RequestError(f"member {key!r} is already in the batch")
        self.model.check_steps(request.steps)
        state = initial_state(self.model, request) if start is None else start
        if state.request.steps != request.steps:
            raise RequestError(f"start state has {state.request.steps} steps, request has {request.steps}")
        if isinstance(stop, bool) or not isinstance(stop, int) or not 0 <= stop <= state.split:
            raise RequestError(f"stop split must be an integer in [0, {state.split}], got {stop!r}")
        if state.latent.shape[1] != self.backend.latent_channels:
            raise RequestError(
                f"latent has {state.latent.shape[1]} channels, model {self.model.name!r} "
                f"expects {self.backend.latent_channels}"
            )
        if state.request is not request:
            state = replace(state, request=request)
        if state.split == stop:
            self._done.append((key, state))
            return
        reference = self._reference(state)
        scheduler = copy.deepcopy(reference)
        if len(scheduler.timesteps) != state.steps:
            raise RequestError(
                f"start state has a schedule of {state.steps} steps, its scheduler makes {len(scheduler.timesteps)}"
            )
        restore(scheduler, state.scheduler_state, self.backend.device)
        _, generator = _seeded_noise(request.seed, tuple(state.latent.shape))
        seeded = generator.get_state()
        if state.generator_state is not None:
            generator.set_state(state.generator_state)
        if conditioning is None:
            conditioning = request_conditioning(self.backend, request)
        latent = state.latent.to(self.backend.device, self.backend.torch_dtype())
        with torch.inference_mode():
            latent = latent.clone()
        self._members[key] = _Member(
            key,
            request,
            state,
            state.split,
            stop,
            scheduler,
            reference,
            generator,
            seeded,
            conditioning,
            latent,
            self.model.latent_space,
        )

    def _reference(self, state: LatentState):
        key = (state.scheduler_class, json.dumps(state.scheduler_config, sort_keys=True), state.request.steps)
        if key not in self._references:
            reference = self.backend.new_scheduler(state.scheduler_class, state.scheduler_config)
            reference.set_timesteps(state.request.steps, device=self.backend.device)
            self._references[key] = reference
        return self._references[key]

    def state(self, key) -> LatentState:
        """The current state of active member ``key`` (e.g. for the edge's latent cache)."""
        return self._members[key].state()

    def steps_done(self, key) -> int:
        """Denoising steps active member ``key`` has done (its state's ``steps_done``), cheaply."""
        return self._members[key].position

    def pop_failed(self) -> list[tuple[object, str]]:
        """``(key, reason)`` of the members that failed since the last call; they have left."""
        failed, self._failed = self._failed, []
        return failed

    def _fail(self, m: _Member, err: Exception) -> None:
        log.warning("member %r failed at step %d: %s: %s", m.key, m.split, type(err).__name__, err)
        del self._members[m.key]
        self._failed.append((m.key, f"step {m.split} failed: {type(err).__name__}: {err}"))

    def step(self) -> list[tuple[object, LatentState]]:
        """One denoising step for every active member, batched; returns ``(key, state)`` of
        the members that reached their stop split (and of members added already there).

        Exception-safe per member: a member whose input or scheduler step raises leaves the
        batch (see :meth:`pop_failed`); if the batched denoiser call raises, each member is
        retried alone so that only the members whose own call fails leave."""
        return self.complete(self.launch())

    def launch(self, denoiser=None) -> PendingStep:
        """The first half of :meth:`step`: the members' denoiser inputs, and the batched
        denoiser call started on ``denoiser`` (a ``concurrent.futures`` executor; default:
        none, the call runs in :meth:`complete`). Members added before :meth:`complete` join
        the next step. Finish with :meth:`complete`; :meth:`step` is both at once."""
        import torch

        finished, self._done = self._done, []
        inputs = {}
        with torch.inference_mode():
            for m in list(self._members.values()):
                try:
                    inputs[m] = self._input(m)
                except Exception as err:
                    self._fail(m, err)
        future = None
        if denoiser is not None and inputs:
            future = denoiser.submit(self._call, list(inputs), inputs)
        return PendingStep(finished, inputs, future)

    def complete(self, pending: PendingStep) -> list[tuple[object, LatentState]]:
        """The second half of :meth:`step`: wait for the denoiser call, advance every member
        of the launched step, return ``(key, state)`` of those that reached their stop."""
        import torch

        finished = pending.finished
        with torch.inference_mode():
            for m, output in self._predict(pending.inputs, pending.future).items():
                try:
                    self._advance(m, output)
                except Exception as err:
                    self._fail(m, err)
                    continue
                if m.split == m.stop:
                    del self._members[m.key]
                    finished.append((m.key, m.state()))
        return finished

    def _input(self, m: _Member) -> tuple:
        """Member ``m``'s denoiser rows: its input latent once per conditioning row, and timesteps."""
        t = m.scheduler.timesteps[m.position]
        x = self.backend.model_input(m.scheduler, m.latent, t)
        copies = len(m.conditioning)  # the latent once per conditioning row
        return x.expand(copies, *x.shape[1:]), t.reshape(1).expand(copies)

    def _call(self, group: list, inputs: dict) -> dict:
        """The denoiser output rows of the members in ``group``: one batched call per latent
        size (members of different image sizes cannot share a tensor; those of one size do)."""
        import torch

        sizes: dict[tuple, list] = {}
        for m in group:
            sizes.setdefault(tuple(inputs[m][0].shape[1:]), []).append(m)
        pool = self.model.workers  # G worker replicas (runtime.workers), or this process
        rows = {}
        for members in sizes.values():
            with torch.inference_mode():  # thread-local: set here too, for a call on another thread
                outputs = (self.backend if pool is None else pool).predict(
                    torch.cat([inputs[m][0] for m in members]),
                    torch.cat([inputs[m][1] for m in members]),
                    Conditioning.cat([m.conditioning for m in members]),
                )
            row = 0
            for m in members:
                rows[m] = outputs[row : row + len(m.conditioning)]
                row += len(m.conditioning)
        return rows

    def _predict(self, inputs: dict, future=None) -> dict:
        """The denoiser output rows of every member in ``inputs``: one batched call (already
        started, if ``future``); if it raises, one call per member (a member whose own call
        raises fails)."""
        group = list(inputs)
        if not group:
            return {}
        try:
            return future.result() if future is not None else self._call(group, inputs)
        except Exception as err:
            if len(group) == 1:
                self._fail(group[0], err)
                return {}
            log.warning("batched step of %d members failed (%s); retrying each member alone", len(group), err)
        outputs = {}
        for m in group:
            try:
                outputs.update(self._call([m], inputs))
            except Exception as err:
                self._fail(m, err)
        return outputs

    def _advance(self, m: _Member, output) -> None:
        """Member ``m``'s scheduler step from its denoiser rows (``[uncond, cond]`` when guided);
        raises :class:`NonFiniteLatent` if the new latent has NaN or infinity (never an image)."""
        import torch

        if len(m.conditioning) == 2:  # guided: rows [uncond, cond]
            output = self.backend.guide(output[:1], output[1:2], m.request.guidance_scale, m.request.guidance_rescale)
        t = m.scheduler.timesteps[m.position]
        latent = self.backend.step(m.scheduler, output, t, m.latent, m.generator, m.request.eta)
        if not bool(torch.isfinite(latent).all()):
            raise NonFiniteLatent("the latent became non-finite (NaN or infinity in the model's output)")
        m.latent = latent
        m.split -= 1

    def run(self) -> dict:
        """Step until every member has left; ``{key: final state}``. Raises
        :class:`GenerationFailed` naming the first member that failed."""
        results = dict(self._done)
        self._done = []
        while self._members:
            results.update(self.step())
        failed = self.pop_failed()
        if failed:
            key, reason = failed[0]
            raise GenerationFailed(f"request {key!r}: {reason}")
        return results
