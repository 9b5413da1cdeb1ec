import numpy as np

from xmipp3_deepcons.core.noise import pick_noise


def test_negatives_keep_half_a_box_from_candidates_and_cover_a_non_square_micrograph():
    rng = np.random.default_rng(0)
    shape = (1000, 3000)  # rows, columns: wide micrograph
    candidates = rng.uniform([0, 0], [3000, 1000], (200, 2))
    noise = pick_noise(shape, candidates, box_size=100, count=200, rng=rng)
    assert noise.shape == (200, 2)
    distances = np.hypot(*(noise[:, None, :] - candidates[None, :, :]).transpose(2, 0, 1))
    assert distances.min() >= 50
    # inside the micrograph with the whole box, x along the 3000-px axis
    assert noise[:, 0].min() >= 50 and noise[:, 0].max() <= 2950
    assert noise[:, 1].min() >= 50 and noise[:, 1].max() <= 950
    assert noise[:, 0].max() > 2000  # the far side of the wide axis is used too


def test_same_seed_same_negatives_other_seed_other_negatives():
    candidates = np.array([[500.0, 500.0]])
    a = pick_noise((1024, 1024), candidates, 128, 50, np.random.default_rng(7))
    b = pick_noise((1024, 1024), candidates, 128, 50, np.random.default_rng(7))
    c = pick_noise((1024, 1024), candidates, 128, 50, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_crowded_micrograph_returns_what_fits():
    candidates = np.array([[x, y] for x in range(0, 400, 40) for y in range(0, 400, 40)], float)
    noise = pick_noise((400, 400), candidates, 100, 30, np.random.default_rng(1), max_rounds=20)
    assert len(noise) == 0
    assert len(pick_noise((400, 400), np.zeros((0, 2)), 100, 30, np.random.default_rng(1))) == 30
