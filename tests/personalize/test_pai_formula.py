"""Pure functions of the PAI measurement: eq. (1), the sigmoid fit, distances, PSNR, S*."""

import numpy as np
import pytest
from scipy.special import expit

from edgediff.personalize.data import personal_prompt, prompt_digit
from edgediff.personalize.pai import (
    PaiConfig,
    PaiConstants,
    fit_sigmoid,
    pai_index,
    pairwise_distance,
    parse_splits,
    sigma_p,
)
from edgediff.personalize.reuse import psnr, reusable_bound


def test_pai_is_eq_1_with_the_paper_constants():
    c = PaiConstants()
    assert (c.kappa, c.a, c.b) == (3.0, 30.0, 0.1)
    assert sigma_p(0.1) == pytest.approx(0.5)
    assert pai_index(1.0, 0.1) == pytest.approx(1.5)
    assert pai_index(0.5, 0.3) == pytest.approx(3 * 0.5 / (1 + np.exp(-30 * 0.2)))
    assert pai_index(0.9, 0.0) < 0.15  # identical images: personalization lost, PAI small
    np.testing.assert_allclose(pai_index([1.0, 0.5], [0.1, 0.1]), [1.5, 0.75])


@pytest.mark.parametrize("a, b", [(0.0413, 71.44), (0.2, 20.0), (0.05, 120.0)])
def test_sigmoid_fit_recovers_parameters_of_synthetic_data(a, b):
    n = np.arange(0, 201, 20)
    fa, fb, r2 = fit_sigmoid(n, expit(a * (n - b)))
    assert fa == pytest.approx(a, rel=1e-3) and fb == pytest.approx(b, rel=1e-3) and r2 == pytest.approx(1.0)
    noisy = expit(a * (n - b)) + np.random.default_rng(0).normal(0, 0.05, n.size)
    fa, fb, r2 = fit_sigmoid(n, noisy)
    assert 0.7 < r2 < 1.0 and abs(fb - b) < 25


def test_flat_data_fits_badly():
    n = np.arange(0, 201, 20)
    values = np.where(n % 40 == 0, 0.2, 0.8)  # zig-zag: no sigmoid explains it
    assert fit_sigmoid(n, values)[2] < 0.5


def test_parse_splits():
    assert parse_splits("0:200:20") == tuple(range(0, 201, 20))
    assert parse_splits("0:10:4") == (0, 4, 8, 10)  # N = STOP is always included
    assert parse_splits("50,0,20") == (0, 20, 50)
    for bad in ("0:200", "a:b:c", "10:0:5", "0:10:0", "x"):
        with pytest.raises(ValueError):
            parse_splits(bad)
    assert PaiConfig(splits=(0, 5, 10)).N == 10
    for splits in ((0, 5), (0, 0, 5), (-1, 0, 5)):
        with pytest.raises(ValueError):
            PaiConfig(splits=splits)


def test_pairwise_distance():
    a = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    b = np.full((2, 4, 4, 3), 255, dtype=np.uint8)
    same = np.stack([a, a, a], axis=1)  # (2 sets, 3 users, H, W, 3)
    np.testing.assert_array_equal(pairwise_distance(same), [0.0, 0.0])
    mixed = np.stack([a, a, b], axis=1)
    np.testing.assert_allclose(pairwise_distance(mixed), [2 / 3, 2 / 3])  # pairs: 0, 1, 1
    with pytest.raises(ValueError, match="two users"):
        pairwise_distance(a[:, None])


def test_psnr_and_reusable_bound():
    assert psnr(255.0**2) == pytest.approx(0.0)
    assert psnr(1.0) == pytest.approx(20 * np.log10(255))
    psnr_db = [12.0, 20.0, 29.0, 31.0, 25.0]
    assert reusable_bound(psnr_db, 30.0) == 3  # steps 1..3 stay below; a later dip does not count
    assert reusable_bound(psnr_db, 10.0) == 0
    assert reusable_bound(psnr_db, 40.0) == 5


def test_prompts():
    assert prompt_digit("a handwritten digit 7") == 7
    assert prompt_digit("digit 3, not 1") == 1  # the last digit character is the class
    with pytest.raises(ValueError, match="names no digit"):
        prompt_digit("a dog")
    assert personal_prompt("a handwritten digit 3", "sks") == "a handwritten digit 3 in sks style"
    assert personal_prompt("x", None) == "x"


def test_pai_figures_are_registered_for_reproduce():
    import importlib

    from edgediff.reproduce import REGISTRY

    module, func = REGISTRY["pai"].target.split(":")
    assert callable(getattr(importlib.import_module(module), func))
