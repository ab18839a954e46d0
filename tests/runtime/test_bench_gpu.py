"""bench/gpu.py: one clear line without CUDA, and its CPU smoke run (CI never has a GPU)."""

import math
import re
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def gpu(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import gpu

    return gpu


def test_without_cuda_one_line_and_exit_2(gpu, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("bench/gpu.py: CUDA is not available here") and "--device cpu --tiny" in captured.err


@pytest.mark.slow
def test_smoke_run_prints_one_table_of_the_four_benches(gpu, capsys):
    assert gpu.main(["--device", "cpu", "--tiny"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.startswith("bench/gpu.py: tiny at 16x16, float32, on cpu (CPU)")
    rows = [re.fullmatch(r"(\w+) +(.+?) +(-?\d+\.\d{3}) (.+)", line).groups() for line in lines]
    assert list(dict.fromkeys(bench for bench, *_ in rows)) == ["runtime", "executor", "workers", "service"]
    values = {what: float(value) for _, what, value, _ in rows}
    assert all(math.isfinite(v) for v in values.values())
    assert values["4-step generation, split 2 (edge, payload, local, decode)"] > 0
    assert values["executor step, batch 2 (executor / bare denoiser)"] > 0
    assert values["edge member-steps/s (offloaded steps / wall)"] >= 0
