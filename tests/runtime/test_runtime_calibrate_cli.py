import json

import numpy as np
import pytest
from PIL import Image

from edgediff.cli import main
from edgediff.runtime.calibrate import CalibrationConfig, calibrate, fit_linear
from helpers import run_cli


def test_fit_linear_recovers_a_line_and_r2():
    b = np.array([1, 2, 4, 8, 16])
    k, h, r2 = fit_linear(b, 0.03 * b + 0.01)
    assert k == pytest.approx(0.03) and h == pytest.approx(0.01) and r2 == pytest.approx(1.0)
    noisy = 0.03 * b + 0.01 + np.array([0.01, -0.01, 0.01, -0.01, 0.0])
    assert fit_linear(b, noisy)[2] < 1.0


def test_calibrate_times_batched_steps(tiny):
    profile = calibrate(tiny, CalibrationConfig(batches=(1, 3), repeats=1, warmup=0))
    assert profile.batches == [1, 3] and len(profile.step_latency_s) == 2
    assert all(t > 0 for t in profile.step_latency_s)
    # two points: the line passes through both
    assert profile.k * 3 + profile.h == pytest.approx(profile.step_latency_s[1])
    with pytest.raises(ValueError, match="two different batch sizes"):
        CalibrationConfig(batches=(4, 4))


@pytest.mark.slow
def test_cli_calibrate_json_and_out(tmp_path, capsys):
    out = tmp_path / "edge.json"
    # batch sizes far apart, so that timing noise cannot flip the slope's sign
    assert main(["calibrate", "--batches", "1,8", "--repeats", "2", "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed
    assert {"k", "h", "r2", "batches", "step_latency_s", "model", "device"} <= set(printed)
    assert printed["model"] == "tiny" and printed["batches"] == [1, 8]
    # the profile's k, h drop into an instance file's edge (SPEC D.1)
    from edgediff.core.instance import load_instance

    instance = tmp_path / "inst.json"
    user = {"id": "u", "k": 0.1, "h": 0.01, "alpha": 5.0, "request_time": 0.1}
    instance.write_text(json.dumps({"edge": {"k": printed["k"], "h": printed["h"]}, "users": [user]}))
    load_instance(instance)


@pytest.mark.slow
def test_cli_generate_writes_png(tmp_path, capsys):
    out = tmp_path / "img.png"
    args = ["generate", "--prompt", "a dog", "--steps", "4", "--seed", "1", "--out", str(out)]
    assert main([*args, "--split", "2", "--edge-model", "tiny", "--native-size"]) == 0
    assert "16x16, 4 steps = 4 denoiser calls (2 at the edge on tiny" in capsys.readouterr().out
    split = np.asarray(Image.open(out))
    assert split.shape == (16, 16, 3)
    assert main(args) == 0  # default: enlarged to a viewable size, nearest neighbour
    text = capsys.readouterr().out
    assert "256x256 (the model's 16x16, enlarged 16x)" in text and "all local" in text
    viewable = np.asarray(Image.open(out))
    assert viewable.shape == (256, 256, 3)
    assert np.array_equal(viewable[::16, ::16], split)  # same seed, same model: same image, each pixel 16x16
    assert np.array_equal(viewable, np.kron(split, np.ones((16, 16, 1), dtype=np.uint8)))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--split", "9"], "--split must be in [0, 4]"),
        (["--split", "-1"], "--split"),
        (["--steps", "0"], "--steps"),
        (["--out", "{d}/img.jpg"], ".png"),
        (["--out", "{d}/nowhere/img.png"], "does not exist"),
        (["--model", "{d}"], "not a diffusers pipeline directory"),
    ],
)
def test_cli_generate_bad_options_exit_2(tmp_path, capsys, args, message):
    options = {"--prompt": "x", "--steps": "4", "--out": "{d}/img.png", **dict(zip(args[::2], args[1::2]))}
    argv = ["generate"] + [a.format(d=tmp_path) for pair in options.items() for a in pair]
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own errors: usage line + error line
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "img.png").exists()


@pytest.mark.slow
def test_cli_exit_codes_in_a_subprocess(tmp_path):
    result = run_cli("generate", "--prompt", "x", "--model", str(tmp_path), "--out", str(tmp_path / "a.png"))
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "model_index.json" in lines[0], result.stderr
    result = run_cli("calibrate", "--batches", "0,2")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "--batches" in result.stderr
