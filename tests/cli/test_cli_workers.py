"""serve/calibrate --workers: bad values are one line and exit 2 before any model loads;
calibrate --workers 1,2 fits L_e(b, G) = k_e b / G + h_e jointly."""

import json

import pytest

from edgediff.cli import main
from edgediff.runtime.calibrate import fit_linear

NO_MODEL = ["--model", "/nonexistent/model"]  # never reached: each error comes first


def _exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's own refusal of an option's value
        return exit_.code


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "0"], "--workers"),
        (["--workers", "-1"], "--workers"),
        (["--workers", "two"], "--workers"),
        (["--workers", "1.5"], "--workers"),
        (["--worker-threads", "0"], "--worker-threads"),
        (["--workers", "2", "--gpus", "3"], "gpus (3) and workers (2) disagree"),
        (["--workers", "2", "--device", "cuda"], "--workers: 2 workers need 2 GPUs"),
    ],
)
def test_serve_refuses_bad_workers_before_the_model_loads(args, message, capsys):
    assert _exit_code(["serve", "--port", "0", *NO_MODEL, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "0"], "--workers"),
        (["--workers", "1,1"], "each count once"),
        (["--worker-threads", "2"], "--worker-threads needs --workers"),
        (["--workers", "1,2", "--device", "cuda"], "--workers: 2 workers need 2 GPUs"),
    ],
)
def test_calibrate_refuses_bad_workers_before_the_model_loads(args, message, capsys):
    assert _exit_code(["calibrate", *NO_MODEL, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.slow
def test_calibrate_workers_writes_k_e_h_e(tmp_path, capsys):
    out = tmp_path / "edge.json"
    args = ["calibrate", "--workers", "1", "--batches", "1,4", "--repeats", "1", "--out", str(out)]
    assert main(args) == 0  # one worker process: the pool's own costs included
    text = capsys.readouterr().out
    assert "G = 1 worker(s):" in text and "L_e(b, G) = k_e*b/G + h_e over G = 1: k_e = " in text
    fit = json.loads(out.read_text())
    assert fit["workers"] == [1] and fit["worker_threads"] == 1 and fit["model"] == "tiny"
    (timed,) = fit["per_workers"]
    assert timed["batches"] == [1, 4] and (fit["k"], fit["h"]) == pytest.approx((timed["k"], timed["h"]))


def test_the_joint_fit_recovers_the_law():
    from edgediff.runtime.calibrate import Profile, WorkersProfile

    k_e, h_e, batches = 0.012, 0.003, [1, 2, 4, 8]

    def timed(g):
        latency = [k_e * b / g + h_e for b in batches]
        return Profile(*fit_linear(batches, latency), "tiny", "cpu", batches, latency, 1, True, 1)

    fit = WorkersProfile.fit([1, 2, 4], [timed(1), timed(2), timed(4)], threads=1)
    assert (fit.k, fit.h, fit.r2) == pytest.approx((k_e, h_e, 1.0))
    assert fit.profiles[1].k == pytest.approx(k_e / 2)  # each pool's own slope is k_e / G
    unscaled = WorkersProfile.fit([1, 2], [timed(1), timed(1)], threads=1)  # 2 workers no faster than 1
    assert unscaled.r2 < 0.9
