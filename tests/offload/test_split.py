import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgediff.core.instance import Instance
from edgediff.offload.split import best_splits


def brute_best(inst, b):
    """Scan every integer split in [N_hat, N] for every user."""
    n = np.arange(inst.N_hat, inst.N + 1)[None, :]
    edge = inst.edge_k * b / inst.G + inst.edge_h
    lat = (
        inst.K
        - inst.request_time[:, None]
        + inst.payload_bits[:, None] * b / (inst.eta * inst.W_max)
        + (inst.N - n) * edge
        + n * inst.local_step_latency[:, None]
    )
    util = inst.alpha[:, None] * inst.pai(n) - lat
    return util.max(axis=1)


@settings(max_examples=150, deadline=None)
@given(
    n_hat=st.integers(0, 150),
    extra=st.integers(1, 150),
    pai_b=st.floats(-20, 220),
    pai_a=st.floats(0.005, 0.5),
    alpha=st.floats(0.01, 500),
    k=st.floats(0.0, 0.4),
    h=st.floats(-0.05, 0.1),
    b=st.integers(1, 20),
    gpus=st.integers(1, 16),
)
def test_closed_form_split_equals_brute_force(n_hat, extra, pai_b, pai_a, alpha, k, h, b, gpus):
    if k + h <= 1e-4:
        return
    inst = Instance.from_dict(
        {
            "N": n_hat + extra,
            "N_hat": n_hat,
            "G": gpus,
            "pai": {"a": pai_a, "b": pai_b},
            "users": [{"id": "u", "k": k, "h": h, "alpha": alpha, "request_time": 0.5}],
        }
    )
    split, util = best_splits(inst, [b])
    assert inst.N_hat <= split[0, 0] <= inst.N
    np.testing.assert_allclose(util[0, 0], brute_best(inst, b)[0], rtol=1e-10, atol=1e-9)


def test_non_concave_case_is_handled():
    # N_hat < b_F: the objective is not concave on [N_hat, N]; both ends and the interior compete
    inst = Instance.from_dict(
        {
            "N": 200,
            "N_hat": 10,
            "pai": {"a": 0.08, "b": 100},
            "users": [
                {"id": f"u{i}", "k": 0.3, "h": 0.0, "alpha": a, "request_time": 0.0}
                for i, a in enumerate([1, 10, 30, 60, 100, 400])
            ],
        }
    )
    for b in (1, 5, 20):
        _, util = best_splits(inst, [b])
        np.testing.assert_allclose(util[:, 0], brute_best(inst, b), rtol=1e-12)
