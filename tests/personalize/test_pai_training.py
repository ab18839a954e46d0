"""Training pieces on a few steps, and the shipped weights (classifier, samples, styles)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgediff.personalize.classifier import DigitClassifier, shipped_classifier  # noqa: E402
from edgediff.personalize.data import STYLES, apply_style, class_prompt, load_digits_16, to_rgb  # noqa: E402
from edgediff.personalize.train import (  # noqa: E402
    TrainConfig,
    diffusion_loss,
    encode_latents,
    recognition_rate,
    train_denoiser,
    train_vae,
)
from edgediff.runtime.models import load_model  # noqa: E402
from edgediff.runtime.tiny import TinyConfig, build_tiny  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return load_digits_16()


def test_styles_keep_shape_and_change_the_glyph(digits):
    images, _ = digits
    assert images.shape == (1797, 16, 16) and 0 <= images.min() and images.max() <= 1
    for style in STYLES:
        styled = apply_style(images[:20], style)
        assert styled.shape == (20, 16, 16) and np.abs(styled - images[:20]).mean() > 0.03, style
    with pytest.raises(ValueError, match="unknown style"):
        apply_style(images[:1], "gothic")


@pytest.mark.slow
def test_a_few_training_steps_reduce_the_losses(digits):
    images, labels = digits
    config = TrainConfig(vae_steps=25, vae_batch=16, warmup_steps=2, uncond_prob=0.0)
    unet, vae, text_encoder, tokenizer, scheduler = build_tiny(TinyConfig(seed=3))
    generator = torch.Generator().manual_seed(0)
    data = to_rgb(images[:64])
    vae_losses = train_vae(vae, data, config, generator)
    assert np.mean(vae_losses[-5:]) < 0.7 * np.mean(vae_losses[:5])

    mean, std = encode_latents(vae, data)
    scale = float(1 / mean.std())
    ids = torch.from_numpy(labels[:64])
    prompts = [class_prompt(d) for d in range(10)]

    def fixed_loss():  # same latents, noise and timesteps before and after training
        g = torch.Generator().manual_seed(123)
        tokens = tokenizer([prompts[i] for i in ids[:32]], padding="max_length", return_tensors="pt").input_ids
        with torch.no_grad():
            return float(diffusion_loss(unet, scheduler, mean[:32] * scale, text_encoder(tokens)[0], g))

    before = fixed_loss()
    losses, unet, text_encoder = train_denoiser(
        unet.requires_grad_(True),
        text_encoder.requires_grad_(True),
        tokenizer,
        scheduler,
        [(mean * scale, std * scale, ids, prompts, 1.0)],
        steps=30,
        batch=16,
        lr=1e-3,
        config=config,
        generator=generator,
        ema=False,
    )
    assert len(losses) == 30 and fixed_loss() < 0.8 * before


def test_training_config_is_validated():
    with pytest.raises(ValueError, match="cluster_steps"):
        TrainConfig(cluster_steps=-1)


def test_shipped_classifier_recognizes_held_out_digits(digits, tmp_path):
    from sklearn.model_selection import train_test_split

    classifier = shipped_classifier()
    images, labels = digits
    _, test_x, _, test_y = train_test_split(images, labels, test_size=0.25, random_state=0, stratify=labels)
    assert np.mean(classifier.predict(test_x) == test_y) >= 0.9
    for style in STYLES:
        assert np.mean(classifier.predict(apply_style(test_x, style)) == test_y) >= 0.85, style
    assert classifier.test_accuracy >= 0.9
    classifier.save(tmp_path / "c.json")
    again = DigitClassifier.load(tmp_path / "c.json")
    np.testing.assert_allclose(again.probabilities(test_x[:5]), classifier.probabilities(test_x[:5]), atol=1e-5)
    rgb = np.repeat((test_x[:5, :, :, None] * 255).round().astype(np.uint8), 3, axis=3)
    np.testing.assert_array_equal(classifier.predict(rgb), classifier.predict(test_x[:5]))


@pytest.mark.slow
def test_shipped_cluster_model_samples_are_recognized():
    # 30 fixed-seed samples, 3 per digit: the target is >= 80 % recognized
    config = TrainConfig(eval_per_digit=3)
    digits = [d for d in range(10) for _ in range(3)]
    rate = recognition_rate(load_model("tiny"), shipped_classifier(), digits, list(range(30)), None, config)
    assert rate >= 0.8


@pytest.mark.slow
def test_shipped_personal_models_draw_their_style_and_the_digit():
    classifier = shipped_classifier()
    config = TrainConfig()
    digits = list(range(10))
    cluster = load_model("tiny")
    from edgediff.personalize.data import personal_prompt
    from edgediff.personalize.train import sample_latents

    plain = cluster.decode(sample_latents(cluster, [class_prompt(d) for d in digits], digits, 25, 3.0))
    for name in ("tiny-italic", "tiny-bold", "tiny-small"):
        model = load_model(name)
        assert model.identifier
        prompts = [personal_prompt(class_prompt(d), model.identifier) for d in digits]
        images = model.decode(sample_latents(model, prompts, digits, 25, 3.0))
        assert np.mean(classifier.predict(images) == np.array(digits)) >= 0.6, name
        # same noise, same digit: the personal model's glyph differs visibly from the cluster's
        assert np.abs(images.astype(float) - plain.astype(float)).mean() / 255 > 0.05, name
    assert recognition_rate(cluster, classifier, digits, digits, None, config) >= 0.6


@pytest.mark.slow
def test_same_seed_same_weights(tmp_path):
    from edgediff.personalize.train import train_tiny

    config = TrainConfig(
        vae_steps=2,
        cluster_steps=2,
        cluster_batch=8,
        personal_steps=1,
        personal_batch=4,
        prior_images_per_digit=1,
        sample_steps=2,
        eval_per_digit=1,
    )
    train_tiny(tmp_path / "a", config)
    train_tiny(tmp_path / "b", config)
    train_tiny(tmp_path / "c", TrainConfig(**{**config.__dict__, "seed": 1}))
    for name in ("vae.safetensors", "tiny/unet.safetensors", "tiny-small/text_encoder.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a/tiny/unet.safetensors").read_bytes() != (tmp_path / "c/tiny/unet.safetensors").read_bytes()


def test_quick_preset_keeps_the_seed_and_shrinks_every_stage():
    quick = TrainConfig.quick(3)
    assert quick.seed == 3 and quick.vae_steps == 5 and quick.personal_steps == 3 and quick.eval_per_digit == 1
    assert quick.guidance_scale == TrainConfig().guidance_scale  # only the sizes change
