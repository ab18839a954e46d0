"""The window decision knows the cache (docs/service.md, "The latent cache"): a read-only peek
puts each request's hit depth into its Part A instance; --cache-policy and --pai."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from edgediff.cli import main
from edgediff.core.pai import PaiCurve, PaiFileError, load_measured_pai
from edgediff.runtime.request import GenerationRequest, LatentState
from edgediff.runtime.tiny import TINY_PAI_FILE
from edgediff.service.client import EdgeClient
from edgediff.service.config import ServiceConfig, ServiceConfigError
from edgediff.service.latent_cache import LatentCache
from edgediff.service.window import window_instance

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (1, 4, 8, 8)
SLOW_DEVICE = (0.25, 0.02)


def unit(angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([np.cos(a), np.sin(a)], dtype=np.float32)


def state(done: int) -> LatentState:
    return LatentState(torch.zeros(SHAPE), GenerationRequest("p", steps=20), 20 - done, "DDIMScheduler", {})


def statistics(cache: LatentCache) -> list:
    return [(e.prompt, e.step, e.uses, e.last_used) for e in cache.entries()]


def test_peek_finds_what_lookup_finds_and_changes_nothing():
    entry_bytes = 4 * 8 * 8 * 4 + 8
    cache = LatentCache(3 * entry_bytes, eviction="lru")
    for prompt, angle, done in (("a", 0, 2), ("a", 0, 6), ("b", 90, 4)):
        assert cache.insert(unit(angle), state(done), done, prompt)
    before = (statistics(cache), cache._clock, list(cache._heap))
    for angle, top in ((0, 6), (0, 5), (20, 6), (90, 6), (60, 6)):
        depth = cache.peek(unit(angle), 20, SHAPE, top, 6)
        assert (statistics(cache), cache._clock, list(cache._heap)) == before  # read-only
        hit = LatentCache.lookup(cache, unit(angle), 20, SHAPE, top, 6)
        assert depth == (0 if hit is None else hit.step)
        before = (statistics(cache), cache._clock, list(cache._heap))
    assert cache.peek(unit(0), 30, SHAPE, 6, 6) == 0  # another step count: no hit
    # peeks alone leave the LRU order as the inserts made it: "a"@2 is still the victim
    fresh = LatentCache(3 * entry_bytes, eviction="lru")
    for prompt, angle, done in (("a", 0, 2), ("a", 0, 6), ("b", 90, 4)):
        fresh.insert(unit(angle), state(done), done, prompt)
    for _ in range(3):
        fresh.peek(unit(0), 20, SHAPE, 2, 6)
    fresh.insert(unit(45), state(3), 3, "c")
    assert sorted((e.prompt, e.step) for e in fresh.entries()) == [("a", 6), ("b", 4), ("c", 3)]


def test_window_instance_carries_the_hit_depth():
    config = ServiceConfig(edge_profile=(0.01, 0.004))
    jobs = [
        SimpleNamespace(id=i, steps=20, k=0.2, h=0.01, alpha=2.0, prompt="p", arrived=0.1, cached_steps=d)
        for i, d in (("a", 0), ("b", 6))
    ]
    jobs.append(SimpleNamespace(id="c", steps=20, k=0.2, h=0.01, alpha=2.0, prompt="p", arrived=0.1))  # no field
    inst = window_instance(jobs, config, start=0.0, b_max=3, edge_profile=(0.01, 0.004), intermediate_bits=8)
    assert list(inst.cached_steps) == [0, 6, 0]


def test_engine_peeks_before_deciding_and_the_hit_is_counted_once(start_service):
    service, engine = start_service(cache_gb=0.01, pai_a=None, pai_b=None)  # the default PAI curve
    with EdgeClient(service.url) as client:
        first = client.submit("a castle on a hill", alpha=5.0, profile=SLOW_DEVICE, steps=20, seed=1)
        done = client.status(first["id"], wait=30)
        assert done["cache_hit_step"] == 0 and done["offloaded_steps"] >= 1
        stored = min(6, done["offloaded_steps"])  # the first stored steps 1 .. min(S*, its offloaded steps)
        second = client.submit("a castle on a hill", alpha=5.0, profile=SLOW_DEVICE, steps=20, seed=2)
        status = client.status(second["id"], wait=30)
        metrics = client.http.get("/metrics").text
        info = client.http.get("/v1/info").json()
    jobs = {job.id: job for job in engine.jobs()}
    assert jobs[first["id"]].cached_steps == 0
    assert jobs[second["id"]].cached_steps == stored == status["cache_hit_step"]  # the decision knew the hit
    # the peek counted no hit, no miss and no use: only the admission's lookup did
    assert "edgediff_cache_hits_total 1.0" in metrics and "edgediff_cache_misses_total 1.0" in metrics
    assert [e.uses for e in engine.cache.entries() if e.step == stored] == [1]
    assert info["pai"]["source"].startswith("measured for tiny") and info["cache"]["policy"] is None


def test_cache_policy_stores_the_deepest_step_only(start_service):
    service, engine = start_service(cache_gb=0.01, cache_policy="lfu")
    assert engine.config.cache_eviction == "lfu" and engine.cache.eviction == "lfu"
    with EdgeClient(service.url) as client:
        first = client.submit("a castle on a hill", alpha=5.0, profile=SLOW_DEVICE, steps=20, seed=1)
        done = client.status(first["id"], wait=30)
    assert done["offloaded_steps"] >= 1
    # Part B's m' = m with m = min(S*, N - n): one entry, at the deepest step computed
    assert [e.step for e in engine.cache.entries()] == [min(6, done["offloaded_steps"])]


def test_stored_steps():
    assert list(ServiceConfig().stored_steps(2, 6)) == [3, 4, 5, 6]
    assert list(ServiceConfig(cache_policy="lru").stored_steps(2, 6)) == [6]
    assert list(ServiceConfig(cache_policy="lru").stored_steps(6, 6)) == []


def test_default_pai_is_the_measured_tiny_curve():
    docs = json.loads((ROOT / "docs/results-pai/pai.json").read_text())
    assert json.loads(TINY_PAI_FILE.read_text())["pai_at_N200"] == docs["pai_at_N200"]  # the shipped copy
    config = ServiceConfig()
    assert (config.pai_a, config.pai_b) == (docs["pai_at_N200"]["a"], docs["pai_at_N200"]["b"])
    other = ServiceConfig(model="/some/pipeline")
    assert (other.pai_a, other.pai_b) == (PaiCurve().a, PaiCurve().b) and other.pai_source == "the paper's fit"
    explicit = ServiceConfig(pai_a=0.05, pai_b=60.0)
    assert (explicit.pai_a, explicit.pai_b) == (0.05, 60.0)


def test_pai_file_of_another_step_count_is_scaled_to_200(tmp_path):
    quick = json.loads((ROOT / "docs/results-pai/quick/pai.json").read_text())
    del quick["pai_at_N200"]  # only the N = 50 fit: scaled by the file's N
    path = tmp_path / "pai.json"
    path.write_text(json.dumps(quick))
    curve = load_measured_pai(path).curve
    assert curve.a == pytest.approx(quick["pai"]["a"] * 50 / 200) and curve.b == pytest.approx(quick["pai"]["b"] * 4)
    assert ServiceConfig(pai_file=path).pai_a == curve.a


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot read PAI file"),
        ("{", "not valid JSON"),
        ("[1]", "expected measure-pai's pai.json"),
        ('{"pai": {"a": 0.1}}', "numbers a and b"),
        ('{"pai_at_N200": {"a": -1, "b": 3}}', "pai_at_N200.a must be > 0"),
        ('{"pai": {"a": 0.1, "b": 3}, "N": 0}', "'N' must be a positive integer"),
    ],
)
def test_bad_pai_file(tmp_path, content, message):
    path = tmp_path / "pai.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(PaiFileError, match=message):
        ServiceConfig(pai_file=path)


def test_cache_policy_errors():
    with pytest.raises(ServiceConfigError, match="needs the Part B slot simulator's learned actor"):
        ServiceConfig(cache_policy="drc")
    with pytest.raises(ServiceConfigError, match="cache_policy must be lru, lfu or lcbfu"):
        ServiceConfig(cache_policy="fifo")
    with pytest.raises(ServiceConfigError, match="conflicts"):
        ServiceConfig(cache_policy="lfu", cache_eviction="lru")


def test_serve_refuses_bad_cache_policy_and_pai_in_one_line(tmp_path, capsys):
    bad = tmp_path / "pai.json"
    bad.write_text("{}")
    missing_model = ["serve", "--port", "0", "--model", "/nonexistent/model"]  # refused before the model
    for args, message in (
        (["--cache-policy", "drc"], "cache_policy 'drc' is not available in the service"),
        (["--cache-policy", "lfru"], "cache_policy must be"),
        (["--pai", str(tmp_path / "none.json")], "cannot read PAI file"),
        (["--pai", str(bad)], "needs measure-pai's fit"),
    ):
        assert main([*missing_model, *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (args, err)
