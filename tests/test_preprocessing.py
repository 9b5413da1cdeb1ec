"""Micrograph preprocessing, CTF and box extraction against numbers worked out by hand."""
import numpy as np
import pytest
import scipy.fft
import scipy.signal

from xmipp3_deepcons.core.ctf import (CTFParams, ctf_image, electron_wavelength, phase_flip,
                                      read_ctf_star, write_ctf_star)
from xmipp3_deepcons.core.extract import extract_boxes
from xmipp3_deepcons.core.micrograph import (downsample_factor, fourier_downsample, normalize,
                                             preprocess_micrograph)
from xmipp3_deepcons.errors import InputError

# ---------------------------------------------------------------------------- downsampling

MEAN = 2.0
# (amplitude, cycles along x over the whole field, cycles along y, phase)
WAVES = [(1.0, 3, 0, 0.3), (0.5, 0, 5, 1.1), (0.25, 4, 7, 2.0), (0.125, -6, 2, -0.4)]


def cosines(rows, cols):
    """Constant + low-frequency cosines on a rows x cols grid that spans one field: the same
    continuous image whatever the sampling."""
    y, x = np.mgrid[:rows, :cols]
    image = np.full((rows, cols), MEAN)
    for a, fx, fy, phase in WAVES:
        image += a * np.cos(2 * np.pi * (fx * x / cols + fy * y / rows) + phase)
    return image


@pytest.mark.parametrize("shape", [(240, 300), (243, 301), (240, 301), (243, 300)])
@pytest.mark.parametrize("factor", [1.5, 2.0])
def test_downsampling_keeps_mean_and_cosine_amplitudes(shape, factor):
    rows, cols = shape
    small = fourier_downsample(cosines(rows, cols), factor)
    assert small.dtype == np.float32
    assert small.shape == (int(rows // factor), int(cols // factor))
    assert small.mean() == pytest.approx(MEAN, abs=1e-4)
    np.testing.assert_allclose(small, cosines(*small.shape), atol=1e-3)
    spectrum = np.fft.fft2(small.astype(float)) / small.size
    for a, fx, fy, phase in WAVES:
        assert 2 * abs(spectrum[fy, fx]) == pytest.approx(a, abs=1e-3)


def test_a_cosine_at_the_new_nyquist_frequency_is_sampled_exactly():
    rows, cols = 240, 300                       # factor 2: 120 x 150, Nyquist 60 and 75 cycles
    y, x = np.mgrid[:rows, :cols]
    image = 0.5 * np.cos(2 * np.pi * 75 * x / cols + 0.7) + np.cos(2 * np.pi * 60 * y / rows + 0.2)
    small = fourier_downsample(image, 2)
    ys, xs = np.mgrid[:120, :150]
    expected = 0.5 * np.cos(0.7) * (-1.0) ** xs + np.cos(0.2) * (-1.0) ** ys
    np.testing.assert_allclose(small, expected, atol=1e-5)


@pytest.mark.parametrize("shape", [(64, 80), (65, 81), (64, 81), (65, 80)])
@pytest.mark.parametrize("factor", [1.40625, 2.0])
def test_downsampling_matches_scipy_resample_axis_by_axis(shape, factor):
    image = np.random.default_rng(3).normal(size=shape)
    small = fourier_downsample(image, factor)
    expected = scipy.signal.resample(scipy.signal.resample(image, small.shape[0], axis=0),
                                     small.shape[1], axis=1)
    np.testing.assert_allclose(small, expected, atol=1e-5)


def test_factor_one_is_a_float32_copy():
    image = np.random.default_rng(0).normal(size=(20, 30)).astype(np.float32)
    out = fourier_downsample(image, 1)
    np.testing.assert_array_equal(out, image)
    assert out is not image and out.dtype == np.float32


def test_downsample_factor():
    assert downsample_factor(128) == 1.0
    assert downsample_factor(180) == pytest.approx(1.40625)
    with pytest.raises(InputError, match="128"):
        downsample_factor(100)


# ------------------------------------------------------------------ normalise and invert

def test_normalize_and_invert():
    image = np.random.default_rng(1).normal(5, 3, (64, 80))
    n = normalize(image)
    assert n.dtype == np.float32
    assert n.mean() == pytest.approx(0, abs=1e-5) and n.std() == pytest.approx(1, abs=1e-5)
    np.testing.assert_array_equal(preprocess_micrograph(image, 1.0, invert=True), -n)
    np.testing.assert_array_equal(preprocess_micrograph(image, 1.0, invert=False), n)


def test_a_flat_image_normalises_to_zeros():
    np.testing.assert_array_equal(normalize(np.full((8, 8), 3.0)), np.zeros((8, 8)))


# -------------------------------------------------------------------------------- CTF

CTF = CTFParams(defocus_u=20000, defocus_v=20000, defocus_angle=0, voltage=300,
                spherical_aberration=2.7, amplitude_contrast=0.1)
LAMBDA_300KV = 0.019687                          # Å, relativistic


def ctf_by_hand(k, defocus=20000.0, cs_mm=2.7, a=0.1, wavelength=LAMBDA_300KV):
    chi = np.pi * wavelength * defocus * k ** 2 - np.pi / 2 * cs_mm * 1e7 * wavelength ** 3 * k ** 4
    return np.sqrt(1 - a * a) * np.sin(chi) + a * np.cos(chi)


def test_wavelength_at_300_kv():
    assert electron_wavelength(300) == pytest.approx(LAMBDA_300KV, abs=1e-6)


def test_ctf_value_against_a_hand_computation():
    values = ctf_image((200, 200), 1.0, CTF)            # grid point 20 along x: k = 0.1 1/Å
    # chi = pi 0.019687 20000 0.01 - pi/2 2.7e7 0.019687^3 1e-4 = 12.3697 - 0.0324 = 12.3373
    # CTF = 0.99499 sin(12.3373) + 0.1 cos(12.3373) = 0.99499 (-0.2271) + 0.1 (0.9739)
    assert ctf_by_hand(0.1) == pytest.approx(-0.1285, abs=1e-4)
    assert values[0, 20] == pytest.approx(ctf_by_hand(0.1), abs=1e-3)
    assert values[20, 0] == pytest.approx(ctf_by_hand(0.1), abs=1e-3)
    assert values[0, 0] == pytest.approx(0.1, abs=1e-6)     # + amplitude contrast at k = 0


def test_phase_shift_adds_to_chi():
    shifted = CTFParams(20000, 20000, 0, 300, 2.7, 0.0, phase_shift=90)
    assert ctf_image((8, 8), 1.0, shifted)[0, 0] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("angle, u_direction, v_direction",
                         [(0, (0, 1), (1, 0)), (90, (1, 0), (0, 1)), (45, (1, 1), (-1, 1))])
def test_astigmatic_zeros_follow_defocus_u_along_u_and_defocus_v_along_v(
        angle, u_direction, v_direction):
    du, dv, n = 25000.0, 15000.0, 256
    values = ctf_image((n, n), 1.0, CTFParams(du, dv, angle, 300, 0.0, 0.0), rfft=False)
    steps = np.arange(1, 90)
    wavelength = electron_wavelength(300)
    for (dy, dx), defocus in ((u_direction, du), (v_direction, dv)):
        line = values[(dy * steps) % n, (dx * steps) % n]
        k = steps * np.hypot(dy, dx) / n
        # chi reaches 390 rad here: the exact wavelength, not its 5-digit value.
        np.testing.assert_allclose(line, np.sin(np.pi * wavelength * defocus * k ** 2), atol=1e-5)
        first_zero = k[np.argmax(line < 0)]             # sin chi = 0 at k^2 = 1 / (lambda df)
        step = np.hypot(dy, dx) / n
        assert 0 <= first_zero - 1 / np.sqrt(wavelength * defocus) < step


def band_limited_image(shape, seed=2):
    """Random image with nothing above 0.6 of Nyquist, so its spectrum is well defined."""
    rows, cols = shape
    rng = np.random.default_rng(seed)
    spectrum = rng.normal(size=(rows, cols // 2 + 1)) + 1j * rng.normal(size=(rows, cols // 2 + 1))
    k = np.hypot(scipy.fft.fftfreq(rows)[:, None], scipy.fft.rfftfreq(cols)[None, :])
    spectrum[k > 0.3] = 0
    return scipy.fft.irfft2(spectrum, s=shape).astype(np.float32)


def test_phase_flip_multiplies_the_spectrum_by_the_sign_of_the_ctf():
    shape, pixel = (128, 160), 2.0
    image = band_limited_image(shape)
    known = scipy.fft.rfft2(image.astype(float))
    flipped = phase_flip(image, pixel, CTF)
    after = scipy.fft.rfft2(flipped.astype(float))
    # hand-picked (row, column) grid points: k = hypot(row / (128 px 2 Å), col / (160 px 2 Å))
    signs = []
    for row, col in [(0, 3), (5, 0), (0, 12), (-9, 14), (20, 17), (3, 30), (-30, 25)]:
        k = np.hypot(row / (shape[0] * pixel), col / (shape[1] * pixel))
        by_hand = ctf_by_hand(k)
        assert abs(by_hand) > 0.05                            # well away from a zero
        signs.append(np.sign(by_hand))
        assert after[row, col] == pytest.approx(known[row, col] * np.sign(by_hand), abs=1e-3)
    assert {1.0, -1.0} <= set(signs)
    np.testing.assert_allclose(after, known * np.sign(ctf_image(shape, pixel, CTF)), atol=2e-3)
    np.testing.assert_allclose(phase_flip(flipped, pixel, CTF), image, atol=1e-5)


def test_phase_flip_keeps_the_contrast_of_a_dark_particle():
    y, x = np.mgrid[:128, :128]
    dark_blob = -np.exp(-((x - 64) ** 2 + (y - 64) ** 2) / (2 * 10.0 ** 2))
    flipped = phase_flip(dark_blob, 1.0, CTF)
    assert flipped[64, 64] < 0.9 * dark_blob[64, 64] < 0
    assert np.corrcoef(flipped.ravel(), dark_blob.ravel())[0, 1] > 0.99
    white = preprocess_micrograph(dark_blob, 1.0, invert=True, ctf=CTF, pixel_size=1.0)
    assert white[64, 64] == white.max() > 0


def test_preprocessing_flips_at_the_downsampled_pixel_size():
    image = band_limited_image((96, 120), seed=5)
    factor, pixel = 1.5, 1.3
    done = preprocess_micrograph(image, factor, invert=True, ctf=CTF, pixel_size=pixel)
    by_steps = -normalize(phase_flip(fourier_downsample(image, factor), pixel * factor, CTF))
    np.testing.assert_allclose(done, by_steps, atol=1e-6)
    wrong_pixel = -normalize(phase_flip(fourier_downsample(image, factor), pixel, CTF))
    assert np.abs(done - wrong_pixel).max() > 0.1
    with pytest.raises(InputError, match="pixel size"):
        preprocess_micrograph(image, factor, ctf=CTF)


# ----------------------------------------------------------------------------- CTF STAR

def test_ctf_star_round_trip_with_optics_groups(tmp_path):
    ctfs = {"mics/mic_a.mrc": CTF, "mics/mic_b.mrc": CTFParams(15000.5, 14000.25, 30.5, 200, 2.0,
                                                                0.07, 12.5),
            "mic_c.tif": CTFParams(18000, 17000, -45, 300, 2.7, 0.1)}
    path = str(tmp_path / "micrographs_ctf.star")
    write_ctf_star(path, ctfs)
    assert open(path).read().count("\n2 200.0 2.0 0.07\n") == 1   # second optics group
    assert read_ctf_star(path) == {"mic_a": CTF, "mic_b": ctfs["mics/mic_b.mrc"],
                                   "mic_c": ctfs["mic_c.tif"]}


def test_ctf_star_relion_30_layout(tmp_path):
    path = tmp_path / "micrographs_ctf.star"
    path.write_text("\ndata_\n\nloop_\n_rlnMicrographName #1\n_rlnDefocusU #2\n_rlnDefocusV #3\n"
                    "_rlnDefocusAngle #4\n_rlnVoltage #5\n_rlnSphericalAberration #6\n"
                    "_rlnAmplitudeContrast #7\n"
                    "Micrographs/m1.mrc 21000.0 20500.0 12.0 300.0 2.7 0.1\n")
    assert read_ctf_star(str(path)) == {"m1": CTFParams(21000, 20500, 12, 300, 2.7, 0.1, 0)}


def test_ctf_star_errors_name_the_file_and_the_column(tmp_path):
    path = tmp_path / "bad.star"
    path.write_text("data_micrographs\nloop_\n_rlnMicrographName #1\n_rlnDefocusU #2\nm.mrc 1000\n")
    with pytest.raises(InputError, match=r"bad\.star.*rlnDefocusV"):
        read_ctf_star(str(path))
    path.write_text("data_optics\nloop_\n_rlnOpticsGroup #1\n_rlnVoltage #2\n"
                    "_rlnAmplitudeContrast #3\n1 300 0.1\n\n"
                    "data_micrographs\nloop_\n_rlnMicrographName #1\n_rlnOpticsGroup #2\n"
                    "_rlnDefocusU #3\n_rlnDefocusV #4\n_rlnDefocusAngle #5\nm.mrc 1 1000 900 0\n")
    with pytest.raises(InputError, match=r"bad\.star.*rlnSphericalAberration"):
        read_ctf_star(str(path))
    with pytest.raises(InputError, match="no such file"):
        read_ctf_star(str(tmp_path / "missing.star"))


# ---------------------------------------------------------------------------- extraction

IMAGE = (1000 * np.arange(300)[:, None] + np.arange(200)[None, :]).astype(np.float32)  # r, c


def test_box_inside_the_image_is_the_plain_slice():
    boxes = extract_boxes(IMAGE, [[100, 150], [70.4, 230.6]])
    assert boxes.shape == (2, 128, 128) and boxes.dtype == np.float32
    np.testing.assert_array_equal(boxes[0], IMAGE[150 - 64:150 + 64, 100 - 64:100 + 64])
    np.testing.assert_array_equal(boxes[1], IMAGE[231 - 64:231 + 64, 70 - 64:70 + 64])
    assert boxes[0][64, 64] == IMAGE[150, 100]                       # centre pixel at 64


def test_box_at_the_corner_replicates_the_edge_pixels():
    box = extract_boxes(IMAGE, [[0, 0]])[0]
    assert box[0, 0] == IMAGE[0, 0] == 0
    assert box[10, 100] == IMAGE[0, 36] == 36                        # rows above -> row 0
    assert box[100, 10] == IMAGE[36, 0] == 36000                     # cols left -> column 0
    assert box[64, 64] == IMAGE[0, 0] and box[127, 127] == 63063
    np.testing.assert_array_equal(box[64:, 64:], IMAGE[:64, :64])


def test_box_past_the_far_corner_and_half_pixel_rounding():
    far, half = extract_boxes(IMAGE, [[199.4, 299.6], [100.5, 150.5]])
    assert far[64, 64] == IMAGE[299, 199] == far[127, 127]          # clipped to the last pixel
    assert half[64, 64] == IMAGE[151, 101]                           # .5 rounds up


def test_no_centres_give_an_empty_stack():
    assert extract_boxes(IMAGE, np.zeros((0, 2))).shape == (0, 128, 128)
    assert extract_boxes(IMAGE, [], size=32).shape == (0, 32, 32)
