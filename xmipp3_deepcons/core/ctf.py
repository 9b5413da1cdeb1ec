"""Contrast transfer function and whole-micrograph phase flipping.

Sign convention (Xmipp's and RELION's): with the usual aberration phase
chi(k) = pi lambda df(theta) k^2 - pi/2 Cs lambda^3 k^4 + phase_shift and underfocus positive,

    CTF(k) = sqrt(1 - A^2) sin(chi) + A cos(chi),

which is +A at k = 0 and positive over the first lobe. This is minus the physical transfer
function of the image (particles come out dark on a light background), and it is the sign that
phase flipping wants: multiplying the spectrum by -1 where this CTF is negative leaves the first
lobe, and so the particles' low-frequency contrast, as it was; the later inversion then makes
them white, with or without flipping.
"""
import os
from dataclasses import dataclass

import numpy as np
import scipy.fft

from ..errors import InputError


@dataclass(frozen=True)
class CTFParams:
    defocus_u: float              # Å, underfocus positive
    defocus_v: float              # Å
    defocus_angle: float          # degrees, angle of the U axis from the x axis
    voltage: float                # kV
    spherical_aberration: float   # mm
    amplitude_contrast: float     # fraction, e.g. 0.1
    phase_shift: float = 0.0      # degrees


def electron_wavelength(voltage_kv):
    """Relativistic electron wavelength in Å (0.019687 Å at 300 kV)."""
    volts = voltage_kv * 1e3
    return 12.2643247 / np.sqrt(volts * (1 + 0.978466e-6 * volts))


def ctf_image(shape, pixel_size, params, rfft=True):
    """CTF (no envelope, sign as in the module docstring) on the rfft2 grid of an image of
    ``shape`` (rows, columns), or on the full fft2 grid when ``rfft`` is false.

    Astigmatic defocus is df(theta) k^2 = 1/2[(du+dv) k^2 + (du-dv) k^2 cos 2(theta-theta_u)],
    expanded in kx, ky so that no angle (and no 0/0 at k = 0) is ever computed.
    """
    rows, cols = shape
    ky = scipy.fft.fftfreq(rows, d=pixel_size)[:, None]
    kx = (scipy.fft.rfftfreq if rfft else scipy.fft.fftfreq)(cols, d=pixel_size)[None, :]
    k2 = kx * kx + ky * ky
    twice_u = np.deg2rad(2.0 * params.defocus_angle)
    k2_cos = (kx * kx - ky * ky) * np.cos(twice_u) + 2.0 * kx * ky * np.sin(twice_u)
    defocus_k2 = 0.5 * ((params.defocus_u + params.defocus_v) * k2 +
                        (params.defocus_u - params.defocus_v) * k2_cos)
    wavelength = electron_wavelength(params.voltage)
    cs = params.spherical_aberration * 1e7                          # mm -> Å
    chi = (np.pi * wavelength * defocus_k2 - 0.5 * np.pi * cs * wavelength ** 3 * k2 * k2 +
           np.deg2rad(params.phase_shift))
    a = params.amplitude_contrast
    return (np.sqrt(1 - a * a) * np.sin(chi) + a * np.cos(chi)).astype(np.float32)


def phase_flip(image, pixel_size, params):
    """Multiply the spectrum by -1 where the CTF is negative, so every frequency has the
    contrast of the first lobe (``pixel_size`` in Å/px of this image)."""
    image = np.asarray(image, dtype=np.float32)
    spectrum = scipy.fft.rfft2(image, workers=-1)
    np.negative(spectrum, out=spectrum, where=ctf_image(image.shape, pixel_size, params) < 0)
    flipped = scipy.fft.irfft2(spectrum, s=image.shape, workers=-1, overwrite_x=True)
    return flipped.astype(np.float32, copy=False)


MICROGRAPH_COLUMNS = ("rlnMicrographName", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")
OPTICS_COLUMNS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")


def read_ctf_star(path):
    """{micrograph file stem: CTFParams} from a RELION micrographs_ctf.star.

    Voltage, Cs and amplitude contrast come from the micrographs block when it has them
    (RELION 3.0) and otherwise from data_optics, joined on _rlnOpticsGroup (RELION 3.1+).
    """
    micrographs, optics = _ctf_blocks(path)
    for column in MICROGRAPH_COLUMNS:
        if not micrographs.hasColumn(column):
            raise InputError(f"CTF file {path}: column _{column} is missing; give a RELION "
                             f"micrographs_ctf.star from CTF estimation")
    result = {}
    for row in micrographs:
        group = _optics_row(path, micrographs, optics, row)
        value = _value_reader(path, micrographs, row, group)
        stem = os.path.splitext(os.path.basename(row.rlnMicrographName))[0]
        result[stem] = CTFParams(
            value("rlnDefocusU"), value("rlnDefocusV"), value("rlnDefocusAngle"),
            value("rlnVoltage"), value("rlnSphericalAberration"),
            value("rlnAmplitudeContrast"),
            value("rlnPhaseShift") if micrographs.hasColumn("rlnPhaseShift") else 0.0)
    return result


def _ctf_blocks(path):
    """(micrographs table, {optics group: optics row}) of a CTF STAR file."""
    from ..io.coordinates import read_star_blocks
    if not os.path.isfile(path):
        raise InputError(f"CTF file {path}: no such file; give the micrographs_ctf.star of a "
                         f"RELION CTF estimation")
    try:
        tables = read_star_blocks(path)
    except (ValueError, OSError) as error:
        raise InputError(f"CTF file {path}: cannot be read as STAR ({error})") from None
    micrographs = tables.get("micrographs") or next(
        (table for table in tables.values() if table.hasColumn("rlnDefocusU")), None)
    if micrographs is None:
        raise InputError(f"CTF file {path}: no data_micrographs block with _rlnDefocusU; give "
                         f"the micrographs_ctf.star of a RELION CTF estimation")
    optics = {}
    if "optics" in tables and tables["optics"].hasColumn("rlnOpticsGroup"):
        optics = {str(row.rlnOpticsGroup): row for row in tables["optics"]}
    return micrographs, optics


def _optics_row(path, micrographs, optics, row):
    """The optics row of a micrograph, or None when the micrographs block carries the optics."""
    if all(micrographs.hasColumn(column) for column in OPTICS_COLUMNS):
        return None
    if micrographs.hasColumn("rlnOpticsGroup"):
        group = str(row.rlnOpticsGroup)
    elif len(optics) == 1:
        group = next(iter(optics))
    else:
        missing = next(c for c in OPTICS_COLUMNS if not micrographs.hasColumn(c))
        raise InputError(f"CTF file {path}: column _{missing} is missing and there is no "
                         f"_rlnOpticsGroup to find it in data_optics")
    if group not in optics:
        raise InputError(f"CTF file {path}: optics group {group} of {row.rlnMicrographName} is "
                         f"not in data_optics; give a file with its _rlnVoltage, "
                         f"_rlnSphericalAberration and _rlnAmplitudeContrast")
    return optics[group]


def _value_reader(path, micrographs, row, optics_row):
    """column -> float, from the micrograph row or else its optics row; errors name both."""
    def value(column):
        source = row if micrographs.hasColumn(column) else optics_row
        if source is None or not hasattr(source, column):
            raise InputError(f"CTF file {path}: column _{column} is missing from both "
                             f"data_micrographs and data_optics")
        text = getattr(source, column)
        try:
            return float(text)
        except ValueError:
            raise InputError(f"CTF file {path}: _{column} of {row.rlnMicrographName} is "
                             f"'{text}', not a number") from None
    return value


def write_ctf_star(path, ctfs):
    """A RELION 3.1-style micrographs_ctf.star for {micrograph name: CTFParams}, one optics
    group per distinct (voltage, Cs, amplitude contrast); for tests and the demo."""
    groups = {}
    for p in ctfs.values():
        groups.setdefault((p.voltage, p.spherical_aberration, p.amplitude_contrast),
                          len(groups) + 1)
    lines = ["", "data_optics", "", "loop_", "_rlnOpticsGroup #1", "_rlnVoltage #2",
             "_rlnSphericalAberration #3", "_rlnAmplitudeContrast #4"]
    lines += [f"{group} {_text(voltage)} {_text(cs)} {_text(a)}"
              for (voltage, cs, a), group in groups.items()]
    lines += ["", "", "data_micrographs", "", "loop_", "_rlnMicrographName #1",
              "_rlnOpticsGroup #2", "_rlnDefocusU #3", "_rlnDefocusV #4", "_rlnDefocusAngle #5",
              "_rlnPhaseShift #6"]
    for name, p in ctfs.items():
        group = groups[(p.voltage, p.spherical_aberration, p.amplitude_contrast)]
        lines.append(f"{name} {group} {_text(p.defocus_u)} {_text(p.defocus_v)} "
                     f"{_text(p.defocus_angle)} {_text(p.phase_shift)}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n\n")


def _text(number):
    """Shortest text that reads back as the same float (numpy scalars included)."""
    return repr(float(number))
