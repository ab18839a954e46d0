"""``edgediff train-tiny``: the cluster-wide model and three DreamBooth-style personal models.

The paper (Sec. III-B, VI-A) fine-tunes Stable Diffusion with DreamBooth: a cluster-wide model
on images representative of the user cluster, and one personal model per user from seven
private photos, each bound to the user's subject. We do the same at laptop scale:

1. VAE: a small ``AutoencoderKL`` learns 16x16 digits (plain and the users' styles) <-> 4x8x8
   latents; ``scaling_factor`` = 1 / std of the data latents, as Stable Diffusion's.
2. Cluster-wide model: UNet + text encoder trained jointly from scratch on all digits with
   prompts ``"a handwritten digit d"`` (epsilon loss, 10 % empty prompts for classifier-free
   guidance, EMA weights).
3. Personal models (DreamBooth): start from the cluster-wide model; instance images are a
   user's few digits in their style with prompts ``"a handwritten digit d in <id> style"``;
   the prior-preservation term uses class images the frozen cluster-wide model generated for
   ``"a handwritten digit d"``. UNet and text encoder are fine-tuned, as in the paper.
4. The digit classifier (:mod:`edgediff.personalize.classifier`) and a report with the
   samples' recognition rate and the stage times.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgediff.personalize.data import IDENTIFIERS, STYLES, apply_style, class_prompt, personal_prompt, to_rgb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of ``train-tiny``. The paper's DreamBooth runs (Stable Diffusion on an
    RTX 4090) publish no step counts; these are sized for minutes on one CPU core."""

    seed: int = 0
    vae_steps: int = 400
    vae_batch: int = 64
    vae_lr: float = 2e-3
    vae_kl_weight: float = 1e-6
    cluster_steps: int = 800
    cluster_batch: int = 128
    cluster_lr: float = 1e-3
    warmup_steps: int = 50
    uncond_prob: float = 0.1  # prompts dropped to "" so that classifier-free guidance works
    ema_decay: float = 0.995
    personal_images_per_digit: int = 2  # the paper: 7 photos per user; we need all 10 digits
    prior_images_per_digit: int = 10
    personal_steps: int = 250
    personal_batch: int = 32  # instance rows; as many prior rows
    personal_lr: float = 3e-4
    prior_weight: float = 1.0  # DreamBooth's lambda
    sample_steps: int = 25  # DDIM steps for class images and the evaluation samples
    guidance_scale: float = 3.0
    eval_per_digit: int = 10
    # train-tiny --lora (personalize.lora): adapters on the frozen cluster-wide model instead of fine-tunes
    lora_rank: int = 4
    lora_steps: int = 400
    lora_lr: float = 2e-3

    def __post_init__(self):
        for name, value in asdict(self).items():
            if name != "seed" and not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
                raise ValueError(f"TrainConfig.{name} must be a finite number >= 0, got {value!r}")

    @classmethod
    def quick(cls, seed: int = 0) -> TrainConfig:
        """A few steps of each stage: a smoke test of the pipeline, not usable weights."""
        return cls(
            seed=seed,
            vae_steps=5,
            cluster_steps=5,
            cluster_batch=16,
            personal_steps=3,
            lora_steps=3,
            personal_batch=8,
            prior_images_per_digit=1,
            sample_steps=3,
            eval_per_digit=1,
        )


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


class _Stopwatch:
    def __init__(self):
        self.stages: dict[str, dict] = {}

    def __call__(self, name: str):
        watch = self

        class _Stage:
            def __enter__(self):
                self.wall, self.cpu = time.perf_counter(), time.process_time()
                log.info("train-tiny: %s ...", name)

            def __exit__(self, *exc):
                wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
                watch.stages[name] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}
                log.info("train-tiny: %s done in %.1f s (cpu %.1f s)", name, wall, cpu)

        return _Stage()


def train_vae(vae, images: np.ndarray, config: TrainConfig, generator) -> list[float]:
    """Fit ``vae`` to ``images`` ``(n, 3, 16, 16)`` in [-1, 1]; returns the loss per step."""
    import torch

    data = torch.from_numpy(images)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr)
    vae.train()
    losses = []
    for step in range(config.vae_steps):
        for group in optimizer.param_groups:
            group["lr"] = config.vae_lr * _lr_factor(step, config.vae_steps, config.warmup_steps)
        x = data[torch.randint(len(data), (config.vae_batch,), generator=generator)]
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        loss = torch.nn.functional.mse_loss(vae.decode(z).sample, x) + config.vae_kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    vae.eval()
    return losses


def encode_latents(vae, images: np.ndarray):
    """Posterior mean and std of ``images`` (unscaled latents)."""
    import torch

    with torch.no_grad():
        posterior = vae.encode(torch.from_numpy(images)).latent_dist
    return posterior.mean, posterior.std


def _encode(model, tokens):
    return model(tokens)[0]


def diffusion_loss(unet, scheduler, latents, embeds, generator):
    """Epsilon-prediction loss at uniformly drawn training timesteps (DDPM's simple loss)."""
    import torch

    noise = torch.randn(latents.shape, generator=generator)
    t = torch.randint(scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
    noisy = scheduler.add_noise(latents, noise, t)
    return torch.nn.functional.mse_loss(unet(noisy, t, encoder_hidden_states=embeds).sample, noise)


def train_denoiser(
    unet,
    text_encoder,
    tokenizer,
    scheduler,
    sets: list[tuple],
    steps: int,
    batch: int,
    lr: float,
    config: TrainConfig,
    generator,
    ema: bool,
) -> tuple[list[float], object, object]:
    """Train ``unet`` and ``text_encoder`` on one or more data sets.

    ``sets`` is a list of ``(mean, std, prompt_index, prompts, weight)``: latent posterior
    means/stds (scaled), each row's index into its ``prompts``, and the weight of its loss
    term (DreamBooth: instance set weight 1, prior set weight lambda). Every step draws
    ``batch`` rows of each set; prompts are dropped to "" with ``config.uncond_prob``.
    Returns the per-step total loss and the (EMA or final) UNet and text encoder.
    """
    import torch

    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ema_unet = copy.deepcopy(unet).requires_grad_(False) if ema else None
    ema_text = copy.deepcopy(text_encoder).requires_grad_(False) if ema else None
    token_sets = []
    for *_, prompts, _ in sets:
        ids = tokenizer(
            [*prompts, ""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt"
        ).input_ids
        token_sets.append(ids)
    unet.train()
    text_encoder.train()
    losses = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * _lr_factor(step, steps, min(config.warmup_steps, steps // 5 + 1))
        total = 0.0
        for (mean, std, prompt_index, prompts, weight), ids in zip(sets, token_sets):
            rows = torch.randint(len(mean), (batch,), generator=generator)
            latents = mean[rows] + std[rows] * torch.randn(mean[rows].shape, generator=generator)
            which = prompt_index[rows].clone()
            which[torch.rand(batch, generator=generator) < config.uncond_prob] = len(prompts)  # ""
            unique, inverse = torch.unique(which, return_inverse=True)
            embeds = _encode(text_encoder, ids[unique])[inverse]
            total = total + weight * diffusion_loss(unet, scheduler, latents, embeds, generator)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(float(total.detach()))
        if ema:
            decay = min(config.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for live, avg in ((unet, ema_unet), (text_encoder, ema_text)):
                    for p, q in zip(live.parameters(), avg.parameters()):
                        q.lerp_(p, 1 - decay)
        if step % 100 == 0:
            log.info("  step %d/%d loss %.4f", step, steps, losses[-1])
    unet.eval()
    text_encoder.eval()
    if ema:
        return losses, ema_unet.eval(), ema_text.eval()
    return losses, unet, text_encoder


def sample_latents(model, prompts: list[str], seeds: list[int], steps: int, guidance: float):
    """Generate with the runtime's batched executor: ``(len(prompts), C, h, w)`` latents."""
    import torch

    from edgediff.runtime.executor import BatchedExecutor
    from edgediff.runtime.request import GenerationRequest

    executor = BatchedExecutor(model)
    for i, (prompt, seed) in enumerate(zip(prompts, seeds)):
        executor.add(i, GenerationRequest(prompt, steps=steps, seed=seed, guidance_scale=guidance), 0)
    results = executor.run()
    return torch.cat([results[i].latent for i in range(len(prompts))])


def recognition_rate(model, classifier, digits, seeds, identifier, config: TrainConfig) -> float:
    """Share of samples of ``"a handwritten digit d"`` (+ identifier) that the classifier
    recognizes as ``d``."""
    prompts = [personal_prompt(class_prompt(d), identifier) for d in digits]
    images = model.decode(sample_latents(model, prompts, seeds, config.sample_steps, config.guidance_scale))
    return float(np.mean(classifier.predict(images) == np.asarray(digits)))


def class_prior_set(cluster, digit_prompts, config: TrainConfig):
    """The prior-preservation set: ``config.prior_images_per_digit`` class images of each digit
    sampled from the frozen cluster-wide model, weighted ``config.prior_weight`` (the full
    fine-tunes and the LoRAs share it)."""
    import torch

    prior_digits = [d for d in range(10) for _ in range(config.prior_images_per_digit)]
    prior = sample_latents(
        cluster,
        [class_prompt(d) for d in prior_digits],
        [20_000 + i for i in range(len(prior_digits))],
        config.sample_steps,
        config.guidance_scale,
    )
    return prior, torch.zeros_like(prior), torch.tensor(prior_digits), digit_prompts, config.prior_weight


def personal_instance_set(vae, images, labels, style: str, digit_prompts, scale: float, rng, config: TrainConfig):
    """A user's training set: ``config.personal_images_per_digit`` images of each digit drawn
    with ``rng``, in ``style``, encoded by ``vae``, with the user's identifier in the prompts
    (the full fine-tunes and the LoRAs train on the same sets)."""
    import torch

    chosen = np.concatenate(
        [rng.choice(np.flatnonzero(labels == d), config.personal_images_per_digit, replace=False) for d in range(10)]
    )
    inst_mean, inst_std = encode_latents(vae, to_rgb(apply_style(images[chosen], style)))
    prompts = [personal_prompt(p, IDENTIFIERS[style]) for p in digit_prompts]
    return inst_mean * scale, inst_std * scale, torch.from_numpy(labels[chosen]), prompts, 1.0


def train_tiny(out: str | Path, config: TrainConfig = TrainConfig(), tiny=None) -> dict:
    """Train everything and write the weights layout of :mod:`edgediff.runtime.tiny`, the
    digit classifier and ``train_report.json`` to ``out``; returns the report."""
    import torch

    from edgediff.personalize.classifier import CLASSIFIER_FILE, train_classifier
    from edgediff.personalize.data import load_digits_16
    from edgediff.runtime.backends import UNetBackend
    from edgediff.runtime.models import DiffusionModel
    from edgediff.runtime.tiny import TinyConfig, build_tiny, save_tiny_weights

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tiny = tiny or TinyConfig(seed=config.seed)
    watch = _Stopwatch()
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    images, labels = load_digits_16()

    with watch("classifier"):
        classifier = train_classifier(seed=config.seed)
        classifier.save(out / CLASSIFIER_FILE)

    unet, vae, text_encoder, tokenizer, scheduler = build_tiny(tiny)
    with watch("vae"):
        styled = np.concatenate([images] + [apply_style(images, s) for s in STYLES])
        vae_losses = train_vae(vae, to_rgb(styled), config, generator)
        mean, std = encode_latents(vae, to_rgb(images))
        scale = float(1.0 / mean.std())
        vae.register_to_config(scaling_factor=scale)
        tiny = TinyConfig(**{**tiny.to_dict(), "vae_scaling_factor": scale})
    vae.requires_grad_(False)

    digit_prompts = [class_prompt(d) for d in range(10)]
    with watch("cluster"):
        cluster_set = (mean * scale, std * scale, torch.from_numpy(labels), digit_prompts, 1.0)
        cluster_losses, unet, text_encoder = train_denoiser(
            unet,
            text_encoder,
            tokenizer,
            scheduler,
            [cluster_set],
            config.cluster_steps,
            config.cluster_batch,
            config.cluster_lr,
            config,
            generator,
            ema=True,
        )
    cluster = DiffusionModel("tiny", UNetBackend(unet, vae, text_encoder, tokenizer, scheduler))
    eval_digits = [d for d in range(10) for _ in range(config.eval_per_digit)]
    eval_seeds = [10_000 + i for i in range(len(eval_digits))]
    report = {"config": asdict(config), "tiny_config": tiny.to_dict(), "classifier_test_accuracy": None}
    report["classifier_test_accuracy"] = classifier.test_accuracy
    with watch("prior"):
        prior_set = class_prior_set(cluster, digit_prompts, config)
        report["cluster_recognition"] = recognition_rate(cluster, classifier, eval_digits, eval_seeds, None, config)
    log.info("cluster-wide model: %.1f %% of samples recognized", 100 * report["cluster_recognition"])

    models = {"tiny": (unet, text_encoder, None)}
    report["personal"] = {}
    for style in STYLES:
        identifier = IDENTIFIERS[style]
        with watch(f"personal-{style}"):
            instance_set = personal_instance_set(vae, images, labels, style, digit_prompts, scale, rng, config)
            p_losses, p_unet, p_text = train_denoiser(
                copy.deepcopy(unet).requires_grad_(True),
                copy.deepcopy(text_encoder).requires_grad_(True),
                tokenizer,
                scheduler,
                [instance_set, prior_set],
                config.personal_steps,
                config.personal_batch,
                config.personal_lr,
                config,
                generator,
                ema=False,
            )
            personal = DiffusionModel(f"tiny-{style}", UNetBackend(p_unet, vae, p_text, tokenizer, scheduler))
            rate = recognition_rate(personal, classifier, eval_digits, eval_seeds, identifier, config)
        models[f"tiny-{style}"] = (p_unet, p_text, identifier)
        report["personal"][f"tiny-{style}"] = {
            "identifier": identifier,
            "recognition": rate,
            "first_loss": p_losses[0],
            "last_loss": float(np.mean(p_losses[-20:])),
        }
        log.info("tiny-%s: %.1f %% of its samples recognized", style, 100 * rate)

    save_tiny_weights(out, tiny, vae, models)
    report.update(
        vae_loss={"first": vae_losses[0], "last": float(np.mean(vae_losses[-20:]))},
        cluster_loss={"first": cluster_losses[0], "last": float(np.mean(cluster_losses[-20:]))},
        stages=watch.stages,
        wall_s=round(time.perf_counter() - start_wall, 2),
        cpu_s=round(time.process_time() - start_cpu, 2),
        torch_threads=torch.get_num_threads(),
    )
    (out / "train_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
