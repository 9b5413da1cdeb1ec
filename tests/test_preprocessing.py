import numpy as np
import pytest
import scipy.fft

from xmipp3_deepcons.core.ctf import (CTFParams, ctf_image, electron_wavelength, phase_flip,
                                      read_ctf_star, write_ctf_star)
from xmipp3_deepcons.core.extract import extract_boxes
from xmipp3_deepcons.core.micrograph import (downsample_factor, fourier_downsample, normalize,
                                             preprocess_micrograph)
from xmipp3_deepcons.errors import InputError

# (amplitude, cycles along x over the field, cycles along y, phase)
WAVES = [(1.0, 3, 0, 0.3), (0.5, 0, 5, 1.1), (0.25, 4, 7, 2.0)]


def band_limited(rows, cols, step=1.0):
    """Constant + low-frequency cosines sampled every ``step`` original pixels."""
    y, x = np.mgrid[:int(rows // step), :int(cols // step)] * step
    image = np.full(x.shape, 2.0)
    for a, fx, fy, phase in WAVES:
        image += a * np.cos(2 * np.pi * (fx * x / cols + fy * y / rows) + phase)
    return image


@pytest.mark.parametrize("shape", [(240, 300), (243, 301)])
@pytest.mark.parametrize("factor", [1.5, 2.0])
def test_downsampling_keeps_mean_and_low_frequencies(shape, factor):
    rows, cols = shape
    small = fourier_downsample(band_limited(rows, cols), factor)
    assert small.shape == (int(rows // factor), int(cols // factor))
    assert small.mean() == pytest.approx(2.0, abs=1e-4)
    # The same cosines on the coarse grid: the coarse pixel pitch is rows/new_rows originals.
    y, x = np.mgrid[:small.shape[0], :small.shape[1]]
    expected = np.full(small.shape, 2.0)
    for a, fx, fy, phase in WAVES:
        expected += a * np.cos(2 * np.pi * (fx * x / small.shape[1] + fy * y / small.shape[0]) + phase)
    np.testing.assert_allclose(small, expected, atol=1e-3)


def test_factor_one_is_a_copy():
    image = np.random.default_rng(0).normal(size=(20, 30)).astype(np.float32)
    out = fourier_downsample(image, 1)
    np.testing.assert_array_equal(out, image)
    assert out is not image


def test_normalize_and_invert():
    image = np.random.default_rng(1).normal(5, 3, (64, 80))
    n = normalize(image)
    assert n.mean() == pytest.approx(0, abs=1e-5) and n.std() == pytest.approx(1, abs=1e-5)
    inverted = preprocess_micrograph(image, 1.0, invert=True)
    np.testing.assert_allclose(inverted, -n, atol=1e-6)
    np.testing.assert_allclose(preprocess_micrograph(image, 1.0, invert=False), n, atol=1e-6)


def test_downsample_factor_refuses_small_boxes():
    assert downsample_factor(180) == pytest.approx(1.40625)
    with pytest.raises(InputError, match="128"):
        downsample_factor(100)


CTF = CTFParams(defocus_u=20000, defocus_v=20000, defocus_angle=0, voltage=300,
                spherical_aberration=2.7, amplitude_contrast=0.1)


def test_wavelength_at_300_kv():
    assert electron_wavelength(300) == pytest.approx(0.019687, abs=1e-6)


def test_ctf_value_against_a_hand_computation():
    # 200 px at 1 Å/px: grid point 20 along x is k = 0.1 1/Å.
    values = ctf_image((200, 200), 1.0, CTF)
    lam, k = 0.0196875, 0.1
    chi = np.pi * lam * 20000 * k ** 2 - 0.5 * np.pi * 2.7e7 * lam ** 3 * k ** 4
    by_hand = np.sqrt(1 - 0.01) * np.sin(chi) + 0.1 * np.cos(chi)
    assert values[0, 20] == pytest.approx(by_hand, abs=1e-3)
    assert values[0, 0] == pytest.approx(0.1, abs=1e-6)     # amplitude contrast at k = 0


def test_astigmatism_follows_the_u_axis():
    astig = CTFParams(25000, 15000, 0, 300, 2.7, 0.1)
    along_x = ctf_image((256, 256), 1.0, astig)[0, :]
    along_y = ctf_image((256, 256), 1.0, astig, rfft=False)[:128, 0]
    first_zero_x = np.argmax(along_x[1:] < 0) + 1
    first_zero_y = np.argmax(along_y[1:] < 0) + 1
    # First zero at chi = pi (ignoring Cs): k^2 ~ 1 / (lambda * defocus)
    assert first_zero_x < first_zero_y
    assert (first_zero_y / first_zero_x) ** 2 == pytest.approx(25000 / 15000, rel=0.2)


def test_phase_flip_multiplies_the_spectrum_by_the_ctf_sign():
    image = np.random.default_rng(2).normal(size=(128, 160)).astype(np.float32)
    flipped = phase_flip(image, 2.0, CTF)
    sign = np.sign(ctf_image(image.shape, 2.0, CTF))
    np.testing.assert_allclose(scipy.fft.rfft2(flipped), scipy.fft.rfft2(image) * sign, atol=2e-3)
    np.testing.assert_allclose(phase_flip(flipped, 2.0, CTF), image, atol=1e-4)
    assert (sign < 0).any() and (sign > 0).any()


def test_ctf_star_round_trip(tmp_path):
    ctfs = {"mic_a.mrc": CTF, "mic_b.mrc": CTFParams(15000, 14000, 30, 200, 2.0, 0.07, 0)}
    path = str(tmp_path / "micrographs_ctf.star")
    write_ctf_star(path, ctfs)
    back = read_ctf_star(path)
    assert back == {"mic_a": CTF, "mic_b": ctfs["mic_b.mrc"]}


def test_ctf_star_missing_column(tmp_path):
    path = tmp_path / "bad.star"
    path.write_text("data_micrographs\nloop_\n_rlnMicrographName #1\n_rlnDefocusU #2\nm.mrc 1000\n")
    with pytest.raises(InputError, match="rlnDefocusV"):
        read_ctf_star(str(path))


def test_extraction_inside_and_at_the_borders():
    image = np.arange(300 * 200, dtype=np.float32).reshape(300, 200)
    boxes = extract_boxes(image, [[100, 150], [0, 0], [199.4, 299.6]])
    assert boxes.shape == (3, 128, 128)
    np.testing.assert_array_equal(boxes[0], image[150 - 64:150 + 64, 100 - 64:100 + 64])
    # corner: rows/cols before 0 repeat the first row/column
    assert boxes[1][0, 0] == image[0, 0] and boxes[1][64, 64] == image[0, 0]
    np.testing.assert_array_equal(boxes[1][70, :64], np.full(64, image[6, 0]))
    np.testing.assert_array_equal(boxes[1][64:, 64:], image[:64, :64])
    # bottom-right: rounded centre (199, 300 -> clipped to 299)
    assert boxes[2][127, 127] == image[299, 199]
    assert extract_boxes(image, np.zeros((0, 2))).shape == (0, 128, 128)
