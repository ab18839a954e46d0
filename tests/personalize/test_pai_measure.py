"""measure-pai, measure-reuse and train-tiny end to end (small settings), and their CLI errors."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from edgediff.cli import main  # noqa: E402

PERSONAL = "tiny-italic,tiny-bold,tiny-small"


@pytest.mark.slow
def test_measure_pai_small_run_writes_files_and_json(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a handwritten digit 3\n\na handwritten digit 7\n")
    out = tmp_path / "pai"
    argv = ["measure-pai", "--cluster", "tiny", "--personal", PERSONAL, "--splits", "0:8:4", "--samples", "1"]
    assert main([*argv, "--prompts", str(prompts), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    for name in ("pai.json", "pai.csv", "fig6_grid.png", "fig7_pai.png"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "pai.json").read_text()) == summary
    # the text says which N the paste-ready fit is for, and gives it for the paper's N = 200
    assert main([*argv, "--prompts", str(prompts)]) == 0
    text = capsys.readouterr().out
    assert 'N = 8-step run; for instance and scenario files with "N": 8): "pai": {"a": ' in text
    assert 'the same curve for "N": 200: "pai": {"a": ' in text
    assert {"pai", "r2", "points", "N", "splits", "paper", "constants"} <= set(summary)
    assert set(summary["pai"]) == {"a", "b"} and summary["N"] == 8 and summary["splits"] == [0, 4, 8]
    assert summary["prompts"] == ["a handwritten digit 3", "a handwritten digit 7"]
    assert summary["identifiers"] == ["sks", "zwx", "vkq"]
    points = {p["split"]: p for p in summary["points"]}
    assert points[0]["personalization"] == 0.0  # all steps at the edge: the users decode one latent
    assert points[8]["personalization"] > 0.05  # all local: each user's own style
    for p in summary["points"]:
        assert 0 <= p["accuracy"] <= 1 and p["offloaded_steps"] == 8 - p["split"]
        assert p["pai"] == pytest.approx(p["pai_normalized"] * 3)
    # the fitted curve drops into an instance file (SPEC D.1)
    from edgediff.core.instance import load_instance

    instance = tmp_path / "inst.json"
    user = {"id": "u", "k": 0.1, "h": 0.01, "alpha": 5.0, "request_time": 0.1}
    instance.write_text(json.dumps({"N": 8, "N_hat": 2, "pai": summary["pai"], "users": [user]}))
    load_instance(instance)


def test_measure_pai_library_scores(tmp_path):
    from edgediff.personalize.classifier import shipped_classifier
    from edgediff.personalize.pai import PaiConfig, measure_pai
    from edgediff.runtime.models import load_model

    personal = [load_model(n) for n in PERSONAL.split(",")]
    config = PaiConfig(splits=(0, 3, 6), samples=2)
    result = measure_pai(load_model("tiny"), personal, ["a handwritten digit 1"], config, shipped_classifier())
    assert result.accuracy.shape == (3, 1, 2, 3) and result.personalization.shape == (3, 1, 2)
    assert result.images.shape == (3, 1, 2, 3, 16, 16, 3)
    # split 0: one shared latent decoded by the same VAE -> identical images for all users
    assert np.array_equal(result.images[0, :, :, 0], result.images[0, :, :, 2])
    np.testing.assert_allclose(
        result.pai, 3 * result.accuracy.mean(-1) / (1 + np.exp(-30 * (result.personalization - 0.1))), rtol=1e-6
    )


def test_measure_pai_rejects_models_that_cannot_share_a_latent_or_be_scored(tmp_path, capsys):
    import copy

    from edgediff.personalize.classifier import shipped_classifier
    from edgediff.personalize.pai import PaiConfig, measure_pai
    from edgediff.runtime.models import load_model

    tiny = load_model("tiny")
    wide = copy.copy(tiny)  # same modules, but claims another VAE: 4x larger images
    wide.backend = copy.copy(tiny.backend)
    wide.backend.vae = copy.deepcopy(tiny.backend.vae)
    wide.backend.vae.register_to_config(block_out_channels=(16, 32, 32, 32))
    wide.name = "wide"
    config = PaiConfig(splits=(0, 1, 2), samples=1)
    with pytest.raises(ValueError, match="cannot share a latent"):
        measure_pai(tiny, [tiny, wide], ["a handwritten digit 1"], config, shipped_classifier())
    with pytest.raises(ValueError, match="classifier scores 16x16"):
        measure_pai(wide, [wide, wide], ["a handwritten digit 1"], config, shipped_classifier())


def test_measure_reuse_json(capsys):
    assert main(["measure-reuse", "--model", "tiny", "--steps", "5", "--samples", "2", "--pmax", "25", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["mse"]) == len(result["psnr_db"]) == 5 and result["pmax_db"] == 25
    assert all(m > 0 for m in result["mse"])
    assert 0 <= result["reusable_steps"] <= 5 and result["output"] == "denoised"
    from edgediff.personalize.reuse import reusable_bound

    assert result["reusable_steps"] == reusable_bound(result["psnr_db"], 25)
    # the clean-image estimate settles as denoising proceeds: the last step changes it least
    assert result["psnr_db"][-1] > result["psnr_db"][0] + 10
    assert result["other"]["output"] == "latent" and len(result["other"]["psnr_db"]) == 5
    assert main(["measure-reuse", "--model", "tiny", "--steps", "3", "--samples", "1", "--output", "latent"]) == 0
    assert "S* =" in capsys.readouterr().out


def test_measure_reuse_latent_output_follows_the_executor_trajectory():
    import torch

    from edgediff.personalize.reuse import ReuseConfig, measure_reuse
    from edgediff.runtime.models import load_model
    from edgediff.runtime.request import GenerationRequest
    from edgediff.runtime.split import run_edge

    tiny = load_model("tiny")
    result = measure_reuse(tiny, ReuseConfig(steps=3, samples=1, output="latent"))
    request = GenerationRequest("a handwritten digit 0", steps=3, seed=0, guidance_scale=3.0)
    states = [run_edge(tiny, request, split) for split in (3, 2)]
    first = tiny.decode(torch.cat([s.latent for s in states])).astype(float)
    assert result["mse"][0] == pytest.approx(np.mean((first[1] - first[0]) ** 2), rel=1e-4, abs=1e-3)


@pytest.mark.slow
def test_train_tiny_quick_writes_loadable_models(tmp_path, capsys):
    out = tmp_path / "weights"
    assert main(["train-tiny", "--out", str(out), "--quick"]) == 0
    assert "cluster-wide samples recognized" in capsys.readouterr().out
    report = json.loads((out / "train_report.json").read_text())
    assert set(report["personal"]) == {"tiny-italic", "tiny-bold", "tiny-small"}
    from edgediff.runtime.models import load_model

    model = load_model(out / "tiny-bold")
    assert model.identifier == "zwx" and model.image_size == 16
    # a train-tiny output folder is accepted wherever a model is (its own classifier is used)
    argv = ["measure-pai", "--cluster", str(out / "tiny"), "--personal", f"{out / 'tiny-italic'},{out / 'tiny-bold'}"]
    assert main([*argv, "--splits", "0:2:1", "--samples", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["N"] == 2


@pytest.mark.slow
def test_train_tiny_lora_quick_writes_loras_measure_pai_loads(tmp_path, capsys):
    from safetensors import safe_open

    assert main(["train-tiny", "--lora", "--quick", "--out", str(tmp_path)]) == 0
    assert "tiny-italic-lora" in capsys.readouterr().out
    files = [tmp_path / "lora" / f"tiny-{style}.safetensors" for style in ("italic", "bold", "small")]
    with safe_open(str(files[1]), "pt") as f:
        assert f.metadata()["edgediff.identifier"] == "zwx"
        assert all(k.startswith(("unet.", "text_encoder.")) and ".lora_" in k for k in f.keys())
    report = json.loads((tmp_path / "lora" / "lora_report.json").read_text())
    assert set(report["personal"]) == {"tiny-italic-lora", "tiny-bold-lora", "tiny-small-lora"}
    argv = ["measure-pai", "--cluster", "tiny", "--personal-lora", f"{files[0]}:0.5,{files[1]}"]
    assert main([*argv, "--splits", "0:2:1", "--samples", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["N"] == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["measure-pai", "--cluster", "tiny", "--personal", PERSONAL, "--splits", "0:10"], "--splits"),
        (["measure-pai", "--cluster", "tiny", "--personal", PERSONAL, "--splits", "0,5"], "at least 3"),
        (["measure-pai", "--cluster", "tiny", "--personal", "tiny-bold"], "at least two"),
        (["measure-pai", "--cluster", "tiny", "--personal", PERSONAL, "--prompts", "{d}/none.txt"], "cannot read"),
        (["measure-pai", "--cluster", "tiny", "--personal", PERSONAL, "--prompts", "{d}/dog.txt"], "names no digit"),
        (["measure-pai", "--cluster", "{d}/nowhere", "--personal", PERSONAL, "--splits", "0:2:1"], "does not exist"),
        (["measure-pai", "--cluster", "tiny", "--personal", PERSONAL, "--samples", "0"], "--samples"),
        (["measure-reuse", "--model", "tiny", "--pmax", "-1"], "--pmax"),
        (["measure-reuse", "--model", "tiny", "--steps", "0"], "--steps"),
        (["measure-reuse", "--model", "tiny", "--output", "x0"], "--output"),
        (["measure-reuse", "--model", "{d}"], "not a diffusers pipeline"),
        (["train-tiny", "--out", "{d}/file.txt/sub"], "cannot create"),
        (["train-tiny", "--out", "{d}/w", "--base", "{d}"], "--base applies only with --lora"),
        (["train-tiny", "--out", "{d}/w", "--lora", "--base", "{d}"], "not a train-tiny output"),
        (["measure-pai", "--cluster", "tiny"], "give --personal or --personal-lora"),
        (["measure-pai", "--cluster", "tiny", "--personal", PERSONAL, "--personal-lora", "a,b"], "one of them"),
        (["measure-pai", "--cluster", "tiny", "--personal-lora", "{d}/x.safetensors,y"], "does not exist"),
    ],
)
def test_cli_errors_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "dog.txt").write_text("a dog\n")
    (tmp_path / "file.txt").write_text("x")
    try:
        code = main([a.format(d=tmp_path) for a in argv])
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_measure_pai_shows_progress(capsys):
    """Issue 19.9: a bar over the edge splits, then the users (forced on: pytest is no terminal)."""
    from edgediff.personalize.classifier import shipped_classifier
    from edgediff.personalize.pai import PaiConfig, measure_pai
    from edgediff.runtime.models import load_model

    personal = [load_model(n) for n in PERSONAL.split(",")[:2]]
    config = PaiConfig(splits=(0, 2, 4), samples=1)
    measure_pai(load_model("tiny"), personal, ["a handwritten digit 1"], config, shipped_classifier(), progress=True)
    err = capsys.readouterr().err
    assert "measure-pai" in err and "4/4" in err  # splits 2 and 0 at the edge, then 2 users
