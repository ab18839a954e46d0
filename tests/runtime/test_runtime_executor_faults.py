"""A member whose step raises fails alone: the batch goes on, every member is answered once."""

import dataclasses

import pytest
import torch

from edgediff.runtime.executor import BatchedExecutor, GenerationFailed, initial_state
from edgediff.runtime.request import GenerationRequest, RequestError
from edgediff.runtime.split import run_edge


def test_steps_are_checked_against_the_scheduler(tiny):
    tiny.check_steps(999)
    with pytest.raises(RequestError, match=r"steps = 1000 .*timestep 1000.*at most 999 steps"):
        tiny.check_steps(1000)
    with pytest.raises(RequestError, match="steps = 1001"):
        run_edge(tiny, GenerationRequest("x", steps=1001), 1000)


def test_a_failing_member_leaves_alone(tiny, monkeypatch):
    monkeypatch.setattr(tiny, "check_steps", lambda steps: None)  # let the poisoned request in
    executor = BatchedExecutor(tiny)
    done_now = GenerationRequest("finishes this step", steps=4, seed=1)
    executor.add("finishes", done_now, 3)
    waiting = GenerationRequest("already there", steps=4, seed=2)
    executor.add("waiting", waiting, 4)  # at its stop already: waits in the done list
    poisoned = GenerationRequest("asks for timestep 1000", steps=1000, seed=3)
    executor.add("poisoned", poisoned, 990)
    executor.add("goes on", GenerationRequest("goes on", steps=4, seed=4), 0)
    left = dict(executor.step())
    assert set(left) == {"finishes", "waiting"}
    [(key, reason)] = executor.pop_failed()
    assert key == "poisoned" and "IndexError" in reason and "step 1000" in reason
    assert executor.active == ["goes on"]
    rest = executor.run()
    alone = run_edge(tiny, GenerationRequest("goes on", steps=4, seed=4), 0)
    torch.testing.assert_close(rest["goes on"].latent, alone.latent, rtol=1e-4, atol=1e-5)
    assert executor.idle and executor.pop_failed() == []


def test_a_failing_batched_call_is_retried_per_member(tiny, monkeypatch):
    predict = tiny.backend.predict

    def refuses_nan(latents, timesteps, conditioning):
        if torch.isnan(latents).any():
            raise RuntimeError("non-finite input")
        return predict(latents, timesteps, conditioning)

    monkeypatch.setattr(tiny.backend, "predict", refuses_nan)
    executor = BatchedExecutor(tiny)
    request = GenerationRequest("nan", steps=4, seed=5)
    noise = initial_state(tiny, request)
    executor.add("nan", request, 0, dataclasses.replace(noise, latent=noise.latent * float("nan")))
    executor.add("fine", GenerationRequest("fine", steps=4, seed=6), 2)
    executor.add("fine too", GenerationRequest("fine too", steps=4, seed=7), 2)
    executor.step()
    assert executor.pop_failed() == [("nan", "step 4 failed: RuntimeError: non-finite input")]
    assert sorted(executor.active) == ["fine", "fine too"]
    assert sorted(executor.run()) == ["fine", "fine too"]


def test_run_raises_for_a_failed_member(tiny, monkeypatch):
    monkeypatch.setattr(tiny, "check_steps", lambda steps: None)
    with pytest.raises(GenerationFailed, match="IndexError"):
        run_edge(tiny, GenerationRequest("x", steps=1000), 999)


def test_generate_with_too_many_steps_is_one_line_exit_2(tmp_path, capsys):
    from edgediff.cli import main

    assert main(["generate", "--prompt", "x", "--steps", "1000", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "steps = 1000" in err[0] and "Traceback" not in err[0]
