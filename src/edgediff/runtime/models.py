"""Text-to-image models for split inference: a ``diffusers`` pipeline directory or ``tiny``.

A :class:`DiffusionModel` is a loaded model: its name, its DreamBooth identifier and its
:class:`~edgediff.runtime.backends.DenoiserBackend`, which holds the parts of the model
family (for Stable Diffusion: UNet, VAE, CLIP-like text encoder + tokenizer, scheduler).
The denoising loop itself lives in :mod:`edgediff.runtime.executor`, so that the edge can
batch many requests at different timesteps. :func:`load_model` picks the backend of a
pipeline directory from :data:`BACKENDS`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from edgediff.runtime import architectures
from edgediff.runtime.backends import DenoiserBackend, ModelLoadError, UNetBackend
from edgediff.runtime.lora import LoraWeights, apply_loras, lora_name, not_a_model
from edgediff.runtime.request import DTYPES, RequestError
from edgediff.runtime.sd3 import SD3Backend
from edgediff.runtime.sdxl import SDXLBackend
from edgediff.runtime.tiny import EMBEDDED, PERSONALIZATION_FILE, TINY_NAME, TinyConfig, is_weights_folder, load_tiny

# Model families: name -> backend class. A new family is its backend module plus one line here.
BACKENDS: dict[str, type[DenoiserBackend]] = {
    "stable-diffusion": UNetBackend,
    "stable-diffusion-xl": SDXLBackend,
    "stable-diffusion-3": SD3Backend,
}
# A directory whose model_index.json names no pipeline class is loaded as this family (whose
# loader says which parts are missing), so that any directory with Stable Diffusion's parts loads.
DEFAULT_FAMILY = "stable-diffusion"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from: an embedded name (``"tiny"``, its personal fine-tunes
    ``"tiny-italic"``/``"tiny-bold"``/``"tiny-small"``, ``"tiny-random"``), a pipeline
    directory, one model's folder of a ``train-tiny`` output, or a real architecture with
    seeded random weights (``arch:sd15``, ``arch:sdxl``). ``tiny`` configures
    ``tiny-random`` only (the trained weights carry their own config). ``loras``: LoRA
    files loaded into the model (:mod:`edgediff.runtime.lora`), e.g. a device's personalization."""

    source: str = TINY_NAME
    dtype: str = "float32"
    device: str = "cpu"
    tiny: TinyConfig = TinyConfig()
    loras: tuple[LoraWeights, ...] = ()

    def __post_init__(self):
        if not self.source:
            raise ModelLoadError("model: expected 'tiny' or a pipeline directory, got ''")
        if self.dtype not in DTYPES:
            raise ModelLoadError(f"model dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    @property
    def is_tiny(self) -> bool:
        return self.source in EMBEDDED

    @property
    def name(self) -> str:
        """The source, with ``+`` and the name of each LoRA (``tiny+tiny-italic-lora``)."""
        return "".join([self.source, *(f"+{lora_name(lora.path)}" for lora in self.loras)])


@dataclass(eq=False)
class DiffusionModel:
    """A loaded text-to-image model (modules in eval mode, no gradients). The properties
    and methods below hold for every family; its parts are the backend's."""

    name: str
    backend: DenoiserBackend
    identifier: str | None = None  # a DreamBooth model's identifier (see personalize.data.personal_prompt)
    # runs the executor's batched denoiser calls on G replicas (runtime.workers); None: in this process
    workers: object = None
    _step_counts: dict = field(default_factory=dict, init=False, repr=False)  # steps -> error or None
    _latent_space: dict | None = field(default=None, init=False, repr=False)

    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def dtype(self) -> str:
        return self.backend.dtype

    def torch_dtype(self):
        return self.backend.torch_dtype()

    @property
    def latent_channels(self) -> int:
        return self.backend.latent_channels

    @property
    def vae_scale_factor(self) -> int:
        return self.backend.vae_scale_factor

    @property
    def image_size(self) -> int:
        """Default image side in pixels (the size the model was trained at)."""
        return self.backend.image_size

    @property
    def scheduler_class(self) -> str:
        return self.backend.scheduler_class

    @property
    def scheduler_config(self) -> dict:
        return self.backend.scheduler_config

    @property
    def latent_space(self) -> dict:
        """The latent-space fingerprint (:func:`edgediff.runtime.latent_space.fingerprint`),
        computed once: what a device's model must share to finish this model's latents."""
        if self._latent_space is None:
            from edgediff.runtime.latent_space import fingerprint

            self._latent_space = fingerprint(self)
        return dict(self._latent_space)

    def new_scheduler(self, class_name: str | None = None, config: dict | None = None):
        """A fresh scheduler (see :meth:`DenoiserBackend.new_scheduler`)."""
        return self.backend.new_scheduler(class_name, config)

    def check_steps(self, steps: int) -> None:
        """Raise :class:`RequestError` naming ``steps`` unless the scheduler can run that many
        steps: its schedule must build, and a scheduler that indexes its training tables by
        timestep must ask only for its training timesteps ``0 .. num_train_timesteps - 1``
        (DDIM with ``steps_offset = 1`` asks for timestep 1000 at 1000 steps). Cached per count."""
        if steps not in self._step_counts:
            self._step_counts[steps] = self._steps_error(steps)
        if self._step_counts[steps] is not None:
            raise RequestError(self._step_counts[steps])

    def _steps_error(self, steps: int) -> str | None:
        """Why ``steps`` does not fit the scheduler (a message starting "steps"), or None."""
        import numpy as np

        scheduler = self.new_scheduler()
        try:
            scheduler.set_timesteps(steps)
        except (ValueError, ZeroDivisionError) as err:
            return f"steps = {steps} does not fit the scheduler of model {self.name!r}: {err}"
        timesteps = np.asarray(scheduler.timesteps, dtype=np.float64)
        if not len(timesteps) or not np.isfinite(timesteps).all():
            return f"steps = {steps} gives no usable schedule with the scheduler of model {self.name!r}"
        tables = getattr(scheduler, "alphas_cumprod", None)
        if tables is not None and (timesteps.min() < 0 or timesteps.max() >= len(tables)):
            largest = next((n for n in range(steps - 1, 0, -1) if self._steps_error(n) is None), None)
            return (
                f"steps = {steps} would ask the scheduler of model {self.name!r} for timestep "
                f"{int(timesteps.max())}; it was trained on timesteps 0..{len(tables) - 1}"
                + ("" if largest is None else f" (at most {largest} steps)")
            )
        return None

    def decode(self, latents):
        """Latents ``(B, C, h, w)`` -> uint8 RGB images ``(B, H, W, 3)`` as a NumPy array."""
        return self.backend.decode(latents)

    def save(self, directory: str | Path) -> None:
        """Write this model as a diffusers pipeline directory (``model_index.json`` + parts),
        with its identifier in ``personalization.json``."""
        self.backend.save(directory)
        if self.identifier:
            (Path(directory) / PERSONALIZATION_FILE).write_text(json.dumps({"identifier": self.identifier}) + "\n")


def backend_class(family: str) -> type[DenoiserBackend]:
    """The backend class of model family ``family`` (a key of :data:`BACKENDS`)."""
    try:
        return BACKENDS[family]
    except KeyError:
        raise ModelLoadError(f"unknown model family {family!r}; known families: {', '.join(BACKENDS)}") from None


def family_name(backend: DenoiserBackend) -> str:
    """The family (key of :data:`BACKENDS`) whose backend class ``backend`` is; its class name
    for a backend no family lists."""
    return next((family for family, cls in BACKENDS.items() if type(backend) is cls), type(backend).__name__)


def family_of(index: dict) -> str:
    """The family of a pipeline directory: the one whose backend names the pipeline class of
    its ``model_index.json`` (``_class_name``); :data:`DEFAULT_FAMILY` when it names none.
    Raises :class:`ModelLoadError` for a pipeline class no family supports."""
    pipeline = index.get("_class_name")
    if pipeline is None:
        return DEFAULT_FAMILY
    family = next((family for family, cls in BACKENDS.items() if pipeline in cls.pipelines), None)
    if family is None:
        supported = ", ".join(p for cls in BACKENDS.values() for p in cls.pipelines)
        raise ModelLoadError(f"unsupported pipeline class {pipeline!r}; supported: {supported}")
    return family


def load_model(spec: ModelSpec | str | Path = TINY_NAME) -> DiffusionModel:
    """Load ``spec``: an embedded name loads the shipped trained weights (``tiny-random``
    builds random ones); ``arch:sd15``/``arch:sdxl`` build a real architecture with seeded
    random weights (:mod:`edgediff.runtime.architectures`, for timing); anything else is a
    local diffusers pipeline directory or a ``train-tiny`` model folder (nothing is
    downloaded). Raises :class:`ModelLoadError`."""
    if not isinstance(spec, ModelSpec):
        spec = ModelSpec(str(spec))
    path = Path(spec.source)
    if spec.is_tiny:
        *parts, identifier = load_tiny(spec.source, spec.tiny)
        backend = UNetBackend(*parts)
    elif spec.source.startswith(architectures.PREFIX):
        with quiet_third_party():
            backend, identifier = architectures.build(spec.source, spec.tiny.seed), None
    elif path.is_dir() and is_weights_folder(path):
        try:
            *parts, identifier = load_tiny(path.name, weights=path.parent)
        except Exception as err:  # torch/safetensors raise many types; one line naming the folder
            raise ModelLoadError(f"cannot load tiny weights from {str(path)!r}: {err}") from None
        backend = UNetBackend(*parts)
    else:
        backend = _load_directory(path)
        identifier = _identifier(path)
    with quiet_third_party():
        identifier = apply_loras(backend, spec.loras, spec.source) or identifier
    _check_finite(backend, spec.source)
    with quiet_third_party():  # diffusers warns on a dtype cast of a model it did not load in that dtype
        backend.place(spec.device, spec.dtype)
    return DiffusionModel(spec.name, backend, identifier)


def _check_finite(backend: DenoiserBackend, source: str) -> None:
    """Refuse weights with NaN or infinity: they would make black or noise images, silently."""
    import torch

    for module in backend.modules:
        for name, tensor in (*module.named_parameters(), *module.named_buffers()):
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ModelLoadError(
                    f"{source!r}: {type(module).__name__} weight {name} has non-finite values (NaN or infinity)"
                )


def _identifier(path: Path) -> str | None:
    """The DreamBooth identifier recorded beside a pipeline (``personalization.json``), if any."""
    try:
        identifier = json.loads((path / PERSONALIZATION_FILE).read_text()).get("identifier")
    except (OSError, ValueError, AttributeError):
        return None
    return identifier if isinstance(identifier, str) and identifier else None


def _load_directory(path: Path) -> DenoiserBackend:
    if not path.exists():
        from difflib import get_close_matches

        close = get_close_matches(str(path), EMBEDDED, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ModelLoadError(
            f"model directory {str(path)!r} does not exist; the built-in models are {', '.join(EMBEDDED)}{hint}"
        )
    if not path.is_dir():
        not_a_model(path)
        raise ModelLoadError(f"model {str(path)!r} is not a directory (expected 'tiny' or a diffusers pipeline)")
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise ModelLoadError(f"{str(path)!r} is not a diffusers pipeline directory: no model_index.json")
    try:
        index = json.loads(index_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{str(index_file)!r} is not valid JSON: {err}") from None
    if not isinstance(index, dict):
        raise ModelLoadError(f"{str(index_file)!r} is not a JSON object")
    backend_type = backend_class(family_of(index))
    missing = [c for c in backend_type.components if not _component_entry(index.get(c))]
    if missing:
        raise ModelLoadError(
            f"{str(path)!r} is not a text-to-image pipeline: model_index.json lacks {', '.join(missing)}"
        )
    with quiet_third_party():  # importing pipeline classes warns too
        classes = {name: _component_class(path, name, *index[name]) for name in backend_type.components}
        for name in backend_type.components:
            if not (path / name).is_dir():
                raise ModelLoadError(f"{str(path)!r} is not a complete pipeline: no {name}/ folder")
            _check_weights(path, name, index[name][0])
        pipeline = _diffusers_pipeline(index.get("_class_name") or backend_type.pipelines[0])
        if pipeline is None:  # a family whose pipeline is not a diffusers class: load part by part
            parts = {name: _load_component(path, name, cls) for name, cls in classes.items()}
        else:
            parts = _load_pipeline(path, index, backend_type, pipeline)
        return backend_type.from_components(path, parts)


# the weights file a part is saved as, by library: safetensors first (what save_pretrained writes)
_WEIGHTS = {
    "diffusers": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
    "transformers": ("model.safetensors", "pytorch_model.bin"),
}


def _check_weights(path: Path, name: str, library: str) -> None:
    """A model part (a folder with ``config.json``) without any weights file is named as it is:
    diffusers' own error names the ``.bin`` fallback when the ``.safetensors`` file is missing."""
    folder = path / name
    if library not in _WEIGHTS or not (folder / "config.json").is_file():
        return
    if any(f.suffix in (".safetensors", ".bin") or f.name.endswith(".index.json") for f in folder.iterdir()):
        return
    safetensors, legacy = _WEIGHTS[library]
    raise ModelLoadError(f"{str(path)!r}: {name}/{safetensors} is missing (nor is there {name}/{legacy})")


def _diffusers_pipeline(name: str):
    import diffusers

    cls = getattr(diffusers, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, diffusers.DiffusionPipeline) else None


def _load_pipeline(path: Path, index: dict, backend_type: type[DenoiserBackend], pipeline) -> dict:
    """Load the directory as diffusers loads it, ``pipeline.from_pretrained`` (so its config
    fixes and deprecations apply, e.g. Stable Diffusion's scheduler ``clip_sample`` and
    ``steps_offset``), skipping the parts the family does not use (safety checker, feature
    extractor, image encoder). Returns the family's parts and, as ``pipeline``, the pipeline."""
    unused = {  # parts the family does not use, and absent ones ([null, null]), are passed as None
        name: None
        for name, entry in index.items()
        if not name.startswith("_")
        and isinstance(entry, list)
        and (name not in (*backend_type.components, *backend_type.optional_components) or None in entry)
    }
    try:
        pipe = pipeline.from_pretrained(str(path), local_files_only=True, **unused)
    except Exception as err:  # the libraries raise many types; report one line naming the directory
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"cannot load {str(path)!r} as a {pipeline.__name__}: {first}") from None
    names = (*backend_type.components, *backend_type.optional_components)
    return {**{name: getattr(pipe, name, None) for name in names}, "pipeline": pipe}


@contextlib.contextmanager
def quiet_third_party():
    """Hide diffusers'/transformers' warnings, load reports and progress bars while loading,
    unless edgediff logs at INFO (``-v``): a user sees one line per problem, not library chatter."""
    if log.isEnabledFor(logging.INFO):
        yield
        return
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    levels = dlog.get_verbosity(), tlog.get_verbosity()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        dlog.set_verbosity(levels[0])
        tlog.set_verbosity(levels[1])
        dlog.enable_progress_bar()
        tlog.enable_progress_bar()


def _component_entry(entry) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and all(isinstance(e, str) and e for e in entry)


def _component_class(path: Path, name: str, library: str, class_name: str):
    # Only the two libraries a text-to-image pipeline is made of: model_index.json must not
    # be able to import arbitrary modules.
    if library not in ("diffusers", "transformers"):
        raise ModelLoadError(
            f"{str(path)!r}: {name} comes from library {library!r}, expected diffusers or transformers"
        )
    cls = getattr(importlib.import_module(library), class_name, None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise ModelLoadError(f"{str(path)!r}: unknown {name} class {library}.{class_name}")
    return cls


def _load_component(path: Path, name: str, cls):
    folder = path / name
    try:
        if name == "scheduler":
            return cls.from_pretrained(str(folder))
        return cls.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:  # the libraries raise many types; report one line naming the part
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"cannot load {name} from {str(folder)!r}: {first}") from None
