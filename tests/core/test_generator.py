import numpy as np

from edgediff.core.generator import alpha_interval, random_instance
from edgediff.core.instance import Instance
from edgediff.core.pai import PaiCurve
from edgediff.core.profiles import PROFILE_TABLE, USER_ROWS


def test_same_seed_same_instance_and_different_seed_differs():
    a, b, c = (random_instance(12, 4, seed=s) for s in (7, 7, 8))
    assert a.to_dict() == b.to_dict()
    assert a.to_dict() != c.to_dict()


def test_users_come_from_the_published_profiles_and_alpha_interval():
    inst = random_instance(300, 8, seed=1)
    pairs = {tuple(PROFILE_TABLE[r]) for r in USER_ROWS}
    assert all((k, h) in pairs for k, h in zip(inst.k, inst.h))
    assert np.all((inst.request_time >= 0) & (inst.request_time < inst.K))
    lo, hi = alpha_interval(inst.local_step_latency, 8, PaiCurve(), 80, 200)
    assert np.all(inst.alpha >= np.maximum(lo, 1e-6) - 1e-12) and np.all(inst.alpha <= hi + 1e-12)
    # slower rows are drawn more often (weights linspace(1, 2, 8))
    rows = [next(r for r in USER_ROWS if PROFILE_TABLE[r, 0] == k) for k in inst.k]
    counts = np.bincount(rows, minlength=11)[3:]
    assert counts[-4:].sum() > counts[:4].sum()


def test_generated_instances_pass_file_validation():
    inst = random_instance(20, 16, seed=2)
    assert Instance.from_dict(inst.to_dict()).to_dict() == inst.to_dict()
