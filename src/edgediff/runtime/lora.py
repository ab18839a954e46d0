"""LoRA on the device: a personalization as a small adapter file on top of a base model.

A LoRA file (``.safetensors``) adds low-rank updates to some layers of a model's denoiser and
text encoders. :func:`read_lora` recognizes one from its tensor names (diffusers/PEFT layout:
``unet.….lora_A.weight``; kohya layout: ``lora_unet_…lora_down.weight``) and says what it
adapts; :func:`apply_loras` loads it with diffusers' own ``load_lora_weights`` (which converts
kohya files) into the model's modules, so the runtime's denoiser calls run the adapted layers
exactly as diffusers' pipeline with the same LoRA does. Several LoRAs combine with diffusers'
``set_adapters`` and one scale each. Needs the ``peft`` extra.

Only the device's model carries an adapter: a LoRA changes neither the latent space nor the
scheduler, so a device with a LoRA finishes a latent the edge made with the plain base model.
The shipped ``tiny-italic-lora``, ``tiny-bold-lora`` and ``tiny-small-lora`` are LoRA
personalizations of ``tiny`` (``edgediff train-tiny --lora``); a LoRA file may record the
DreamBooth identifier it was trained with in its metadata (:data:`IDENTIFIER_KEY`).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from edgediff.runtime.backends import DenoiserBackend, ModelLoadError

log = logging.getLogger(__name__)

LORA_DIR = Path(__file__).parent / "weights" / "lora"
LORA_SUFFIX = "-lora"
IDENTIFIER_KEY = "edgediff.identifier"  # safetensors metadata: the identifier the LoRA was trained with
# the tensor of a LoRA's down (A) projection in each layout: what names a LoRA file's layers
_DOWN = re.compile(r"^(?P<layer>.+?)\.(lora_A|lora_down|lora\.down|lora_linear_layer\.down)(\.[^.]+)?\.weight$")
_KOHYA_PARTS = {
    "lora_unet": "unet",
    "lora_te": "text_encoder",
    "lora_te1": "text_encoder",
    "lora_te2": "text_encoder_2",
}


@dataclass(frozen=True)
class LoraWeights:
    """One LoRA to apply: its file and its scale (diffusers' adapter weight; 1 = as trained)."""

    path: str
    scale: float = 1.0

    def __post_init__(self):
        if not math.isfinite(self.scale):
            raise ModelLoadError(f"LoRA scale must be a finite number, got {self.scale!r} for {self.path!r}")

    @classmethod
    def parse(cls, text: str) -> LoraWeights:
        """``FILE[:SCALE]``, e.g. ``style.safetensors:0.8``; ``FILE`` may also name a shipped
        LoRA (``tiny-italic-lora``). A colon not followed by a number belongs to the file name."""
        path, sep, scale = text.rpartition(":")
        try:
            value = float(scale) if sep else None
        except ValueError:
            value = None
        return cls(shipped_lora(text)) if value is None else cls(shipped_lora(path), value)


@dataclass(frozen=True)
class LoraInfo:
    """What a LoRA file adapts: its layout, adapted layers per model part, ranks, identifier."""

    path: str
    layout: str  # "diffusers" (diffusers/PEFT names) or "kohya"
    layers: dict[str, int]  # model part (unet, text_encoder, text_encoder_2, transformer) -> adapted layers
    ranks: tuple[int, ...]
    identifier: str | None = None
    metadata: dict = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        parts = ", ".join(f"{name} ({count} layers)" for name, count in self.layers.items())
        rank = str(self.ranks[0]) if len(self.ranks) == 1 else f"{min(self.ranks)}..{max(self.ranks)}"
        who = f"; trained with identifier {self.identifier!r}" if self.identifier else ""
        return f"LoRA file ({self.layout} layout), rank {rank}, adapts {parts}{who}"


def shipped_lora(name: str) -> str:
    """The file of a shipped LoRA name (``tiny-italic-lora``), or ``name`` unchanged."""
    if name.endswith(LORA_SUFFIX) and not Path(name).exists():
        shipped = LORA_DIR / f"{name.removesuffix(LORA_SUFFIX)}.safetensors"
        if shipped.is_file():
            return str(shipped)
    return name


def lora_name(path: str | Path) -> str:
    """How a model names its LoRA: the shipped name (``tiny-italic-lora``) or the file's stem."""
    path = Path(path)
    shipped = path.parent.resolve() == LORA_DIR.resolve()
    return f"{path.stem}{LORA_SUFFIX}" if shipped else path.stem


def shipped_loras() -> tuple[str, ...]:
    """Names of the shipped LoRAs."""
    return tuple(sorted(f"{p.stem}{LORA_SUFFIX}" for p in LORA_DIR.glob("*.safetensors")))


def read_lora(path: str | Path, strict: bool = False) -> LoraInfo | None:
    """What the ``.safetensors`` file ``path`` adapts, or None when it is no LoRA file (e.g. a
    full checkpoint). Reads tensor names and shapes only. A file that cannot be read is None
    too (its loader names the problem), or with ``strict`` a :class:`ModelLoadError`."""
    from safetensors import safe_open

    path = Path(path)
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
            downs = {}
            for key in f.keys():
                match = _DOWN.match(key)
                if match:
                    downs[match["layer"]] = f.get_slice(key).get_shape()[0]
    except Exception as err:  # OSError or safetensors' own error (its class moved between versions)
        if not strict:
            return None
        raise ModelLoadError(f"cannot read {str(path)!r} as a safetensors file: {err}") from None
    if not downs:
        return None
    kohya = all(layer.startswith("lora_") for layer in downs)
    layers: dict[str, int] = {}
    for layer in downs:
        part = _KOHYA_PARTS.get(layer.split("_")[0] + "_" + layer.split("_")[1], "other") if kohya else None
        part = part or layer.split(".")[0]
        layers[part] = layers.get(part, 0) + 1
    return LoraInfo(
        str(path),
        "kohya" if kohya else "diffusers",
        dict(sorted(layers.items())),
        tuple(sorted(set(downs.values()))),
        metadata.get(IDENTIFIER_KEY) or None,
        metadata,
    )


def lora_file(path: str | Path) -> LoraInfo:
    """:func:`read_lora` for a file that must be a LoRA; :class:`ModelLoadError` otherwise."""
    if not Path(path).is_file():
        known = ", ".join(shipped_loras()) or "none"
        raise ModelLoadError(f"LoRA file {str(path)!r} does not exist (shipped LoRAs: {known})")
    info = read_lora(path, strict=True)
    if info is None:
        raise ModelLoadError(f"{str(path)!r} is not a LoRA file (.safetensors with lora_A/lora_down tensors)")
    return info


def not_a_model(path: str | Path) -> None:
    """Refuse a LoRA file given where a model belongs, saying how to use it."""
    info = read_lora(path)
    if info is not None:
        raise ModelLoadError(
            f"{str(path)!r} is a {info.describe()}: not a model; load its base model and pass the file with --lora"
        )


def apply_loras(backend: DenoiserBackend, loras, source: str) -> str | None:
    """Load ``loras`` (:class:`LoraWeights`) into ``backend``'s modules with diffusers'
    ``load_lora_weights`` and activate them with their scales (``set_adapters``). Refuses a
    file whose layers the model does not have. Returns the first identifier a LoRA records."""
    loras = tuple(loras)
    if not loras:
        return None
    infos = [lora_file(lora.path) for lora in loras]
    try:
        import peft  # noqa: F401  (diffusers loads LoRAs through PEFT)
    except ImportError:
        raise ModelLoadError("loading a LoRA needs the peft package: pip install 'edgediff[peft]'") from None
    pipeline = backend.diffusers_pipeline()
    if pipeline is None or not hasattr(pipeline, "load_lora_weights"):
        raise ModelLoadError(f"model {source!r} ({type(backend).__name__}) does not take LoRA files")
    names = [f"lora{i}" for i in range(len(loras))]
    for name, lora, info in zip(names, loras, infos):
        try:
            pipeline.load_lora_weights(lora.path, adapter_name=name)
        except Exception as err:  # diffusers/PEFT raise many types; one line naming both files
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelLoadError(f"cannot apply LoRA {lora.path!r} to model {source!r}: {first}") from None
        applied = adapted_layers(backend, name)
        if applied < sum(info.layers.values()):  # diffusers skips names the model lacks, with a warning only
            raise ModelLoadError(
                f"LoRA {lora.path!r} does not fit model {source!r}: {applied} of its "
                f"{sum(info.layers.values())} layers found in the model (made for another architecture?)"
            )
        log.info("LoRA %s (scale %g) on %s: %s", lora.path, lora.scale, source, info.describe())
    pipeline.set_adapters(names, adapter_weights=[lora.scale for lora in loras])
    return next((info.identifier for info in infos if info.identifier), None)


def adapted_layers(backend: DenoiserBackend, adapter: str) -> int:
    """How many layers of ``backend``'s modules carry adapter ``adapter`` (PEFT's LoRA layers)."""
    count = 0
    for module in backend.modules:
        for layer in module.modules():
            lora_a = getattr(layer, "lora_A", None)
            if lora_a is not None and hasattr(lora_a, "keys") and adapter in lora_a.keys():
                count += 1
    return count
