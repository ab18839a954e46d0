"""The PAI curve ``F(n)`` and its rescaling to another step count."""

import numpy as np
import pytest

from edgediff.core.pai import PAPER_STEPS, PaiCurve


def test_for_steps_is_the_same_curve_over_the_fraction_of_local_steps():
    paper = PaiCurve()
    for N in (1, 6, 20, 50, 199, 200, 1000):
        curve = paper.for_steps(N)
        n = np.linspace(0, N, 11)
        np.testing.assert_allclose(curve(n), paper(n * PAPER_STEPS / N), rtol=1e-12)
        back = curve.for_steps(PAPER_STEPS, over=N)
        assert (back.a, back.b) == pytest.approx((paper.a, paper.b), rel=1e-12)
    assert paper.for_steps(PAPER_STEPS) == paper


def test_for_steps_keeps_the_service_s_numbers():
    # the service's instances were built with one factor 200 / N: the same floats, bit for bit
    for N in range(1, 400):
        scale = 200.0 / N
        assert PaiCurve(0.0413, 71.44).for_steps(N) == PaiCurve(0.0413 * scale, 71.44 / scale)


def test_for_steps_from_a_measured_curve():
    measured = PaiCurve(0.12, 30.0)  # fitted on 50-step runs
    at_200 = measured.for_steps(200, over=50)
    assert (at_200.a, at_200.b) == pytest.approx((0.03, 120.0))
