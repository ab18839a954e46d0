import numpy as np

from edgediff.cache.config import CacheConfig
from edgediff.cache.drc import DrcConfig, quantize
from edgediff.cache.simulator import make_environment, simulate


def test_quantize_order_preserving():
    x = np.array([0.9, 0.2, 0.55, 0.45, 0.7])
    cands = quantize(x, 6)
    assert cands.shape == (6, 5)
    assert cands[0].tolist() == [True, False, True, False, True]  # rounding at 0.5
    order = np.argsort(-x)
    for c in cands:  # every candidate keeps the order of the relaxed values: a prefix of the ranking
        bits = c[order]
        assert np.all(bits[:-1] >= bits[1:])
    assert len({tuple(c) for c in cands}) == 6  # all K candidates differ here


def test_drc_learns_and_gets_close_to_oo():
    cfg = CacheConfig(slots=600)
    env = make_environment(cfg, 5)
    drc = simulate(cfg, "drc", 5, env=env)
    oo = simulate(cfg, "oo", 5, env=env)
    assert len(drc.losses) >= 40
    assert np.mean(drc.losses[-10:]) < np.mean(drc.losses[:5])  # BCE falls
    gap = drc.latency.mean() / oo.latency.mean() - 1
    assert gap < 0.03


def test_dnn_is_one_candidate_and_worse_than_drc():
    cfg = CacheConfig(slots=300)
    env = make_environment(cfg, 4)
    drc = simulate(cfg, "drc", 4, env=env, drc=DrcConfig())
    dnn = simulate(cfg, "dnn", 4, env=env)
    assert dnn.latency.mean() > drc.latency.mean()
