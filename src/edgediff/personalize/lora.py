"""``edgediff train-tiny --lora``: LoRA personalizations of the cluster-wide ``tiny`` model.

The same DreamBooth recipe as the full fine-tunes (:mod:`edgediff.personalize.train`): the
same users' instance images (the same seeded draw), identifiers (``sks``, ``zwx``, ``vkq``),
prompts and prior-preservation class images from the frozen cluster-wide model; but the
model stays frozen and only low-rank adapters are trained, as diffusers'
``train_dreambooth_lora.py`` does: PEFT's LoRA on the UNet's attention projections and
feed-forward layers and on the text encoder's attention projections. Each user's adapter is
one small ``.safetensors`` file in diffusers' LoRA layout (``unet.…lora_A.weight``), loaded
with diffusers' ``load_lora_weights`` (:mod:`edgediff.runtime.lora`); its metadata records
the identifier. See docs/results-pai.md.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgediff.personalize.data import IDENTIFIERS, STYLES, class_prompt
from edgediff.personalize.train import (
    TrainConfig,
    class_prior_set,
    personal_instance_set,
    recognition_rate,
    train_denoiser,
)

log = logging.getLogger(__name__)

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
LORA_FOLDER = "lora"  # under --out, as under the shipped weights
REPORT_FILE = "lora_report.json"


def add_lora(unet, text_encoder, rank: int, seed: int):
    """Copies of ``unet`` and ``text_encoder``, frozen, with fresh PEFT LoRA adapters of
    ``rank`` (alpha = rank: the update is applied at scale 1; B = 0, so training starts at
    the base model). Only the adapters require gradients."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model

    unet, text_encoder = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # PEFT draws the A matrices from the global RNG
        for module, targets in ((unet, UNET_TARGETS), (text_encoder, TEXT_TARGETS)):
            # PEFT itself, as diffusers' loader does (transformers' add_adapter asks for a newer peft)
            config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(targets))
            inject_adapter_in_model(config, module, adapter_name="default")
    return unet, text_encoder


def lora_state(unet, text_encoder) -> dict:
    """The adapters' tensors in diffusers' PEFT LoRA layout (``unet.<layer>.lora_A.weight``;
    what ``save_lora_weights`` writes for PEFT state dicts)."""
    from peft.utils import get_peft_model_state_dict

    state = {}
    for prefix, module in (("unet", unet), ("text_encoder", text_encoder)):
        for key, tensor in get_peft_model_state_dict(module).items():
            state[f"{prefix}.{key}"] = tensor.detach().float().contiguous()
    return state


def save_lora(path: Path, unet, text_encoder, identifier: str | None, base: str = "tiny") -> None:
    """Write the adapters of ``unet``/``text_encoder`` to ``path`` (float32 safetensors; the
    identifier and base model in its metadata)."""
    from safetensors.torch import save_file

    from edgediff.runtime.lora import IDENTIFIER_KEY

    metadata = {"format": "pt", "edgediff.base_model": base}
    if identifier:
        metadata[IDENTIFIER_KEY] = identifier
    save_file(lora_state(unet, text_encoder), str(path), metadata=metadata)


def train_tiny_lora(out: str | Path, config: TrainConfig = TrainConfig(), base: str | Path | None = None) -> dict:
    """Train one LoRA per user on the cluster-wide ``tiny`` of ``base`` (a ``train-tiny --out``
    folder; default: the shipped weights) and write ``out/lora/tiny-<style>.safetensors`` and
    ``out/lora/lora_report.json``; returns the report."""
    import torch

    from edgediff.personalize.classifier import CLASSIFIER_FILE, DigitClassifier, shipped_classifier
    from edgediff.personalize.data import load_digits_16
    from edgediff.runtime.backends import UNetBackend
    from edgediff.runtime.models import DiffusionModel
    from edgediff.runtime.tiny import TINY_NAME, load_tiny

    folder = Path(out) / LORA_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    unet, vae, text_encoder, tokenizer, scheduler, _ = load_tiny(TINY_NAME, weights=base)
    classifier = (
        DigitClassifier.load(Path(base) / CLASSIFIER_FILE)
        if base is not None and (Path(base) / CLASSIFIER_FILE).is_file()
        else shipped_classifier()
    )
    scale = float(vae.config.scaling_factor)
    cluster = DiffusionModel(TINY_NAME, UNetBackend(unet, vae, text_encoder, tokenizer, scheduler))
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)  # drawn as train_tiny draws: the same users' images
    images, labels = load_digits_16()
    digit_prompts = [class_prompt(d) for d in range(10)]
    prior_set = class_prior_set(cluster, digit_prompts, config)
    eval_digits = [d for d in range(10) for _ in range(config.eval_per_digit)]
    eval_seeds = [10_000 + i for i in range(len(eval_digits))]
    report: dict = {"config": asdict(config), "base": str(base) if base else "shipped tiny", "personal": {}}
    for index, style in enumerate(STYLES):
        identifier = IDENTIFIERS[style]
        wall = time.perf_counter()
        instance_set = personal_instance_set(vae, images, labels, style, digit_prompts, scale, rng, config)
        p_unet, p_text = add_lora(unet, text_encoder, config.lora_rank, config.seed + index)
        losses, p_unet, p_text = train_denoiser(
            p_unet,
            p_text,
            tokenizer,
            scheduler,
            [instance_set, prior_set],
            config.lora_steps,
            config.personal_batch,
            config.lora_lr,
            config,
            generator,
            ema=False,
        )
        p_unet.requires_grad_(False)
        p_text.requires_grad_(False)
        personal = DiffusionModel(f"tiny+{style}-lora", UNetBackend(p_unet, vae, p_text, tokenizer, scheduler))
        rate = recognition_rate(personal, classifier, eval_digits, eval_seeds, identifier, config)
        path = folder / f"tiny-{style}.safetensors"
        save_lora(path, p_unet, p_text, identifier)
        report["personal"][f"tiny-{style}-lora"] = {
            "file": path.name,
            "identifier": identifier,
            "recognition": rate,
            "first_loss": losses[0],
            "last_loss": float(np.mean(losses[-20:])),
            "parameters": sum(t.numel() for t in lora_state(p_unet, p_text).values()),
            "bytes": path.stat().st_size,
            "wall_s": round(time.perf_counter() - wall, 2),
        }
        log.info("tiny-%s-lora: %.1f %% of its samples recognized", style, 100 * rate)
    report.update(
        wall_s=round(time.perf_counter() - start_wall, 2),
        cpu_s=round(time.process_time() - start_cpu, 2),
        torch_threads=torch.get_num_threads(),
    )
    (folder / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report
