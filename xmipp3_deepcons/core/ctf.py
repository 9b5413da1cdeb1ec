"""Contrast transfer function and whole-micrograph phase flipping.

Sign convention (Xmipp's): CTF = sqrt(1 - A^2) sin(chi) + A cos(chi), positive at low
frequency for an underfocused image, so flipping leaves the particles' contrast as it was and the
later inversion still makes them white.
"""
from dataclasses import dataclass

import numpy as np
import scipy.fft

from ..errors import InputError


@dataclass(frozen=True)
class CTFParams:
    defocus_u: float              # Å, underfocus positive
    defocus_v: float              # Å
    defocus_angle: float          # degrees, U axis from the x axis
    voltage: float                # kV
    spherical_aberration: float   # mm
    amplitude_contrast: float     # fraction, e.g. 0.1
    phase_shift: float = 0.0      # degrees


def electron_wavelength(voltage_kv):
    """Relativistic electron wavelength in Å."""
    volts = voltage_kv * 1e3
    return 12.2643247 / np.sqrt(volts * (1 + 0.978466e-6 * volts))


def ctf_image(shape, pixel_size, params, rfft=True):
    """CTF on the (r)fft2 frequency grid of an image of ``shape`` (rows, columns)."""
    rows, cols = shape
    ky = scipy.fft.fftfreq(rows, d=pixel_size)[:, None]
    kx = (scipy.fft.rfftfreq if rfft else scipy.fft.fftfreq)(cols, d=pixel_size)[None, :]
    k2 = kx ** 2 + ky ** 2
    angle = np.arctan2(ky, kx)
    defocus = 0.5 * (params.defocus_u + params.defocus_v +
                     (params.defocus_u - params.defocus_v) *
                     np.cos(2 * (angle - np.deg2rad(params.defocus_angle))))
    wavelength = electron_wavelength(params.voltage)
    cs = params.spherical_aberration * 1e7
    chi = (np.pi * wavelength * defocus * k2 - 0.5 * np.pi * cs * wavelength ** 3 * k2 ** 2 +
           np.deg2rad(params.phase_shift))
    a = params.amplitude_contrast
    return (np.sqrt(1 - a * a) * np.sin(chi) + a * np.cos(chi)).astype(np.float32)


def phase_flip(image, pixel_size, params):
    """Multiply the spectrum by -1 where the CTF is negative."""
    image = np.asarray(image, dtype=np.float32)
    spectrum = scipy.fft.rfft2(image, workers=-1)
    spectrum[ctf_image(image.shape, pixel_size, params) < 0] *= -1
    return scipy.fft.irfft2(spectrum, s=image.shape, workers=-1).astype(np.float32)


OPTICS_COLUMNS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")
MICROGRAPH_COLUMNS = ("rlnMicrographName", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")


def read_ctf_star(path):
    """{micrograph stem: CTFParams} from a RELION micrographs_ctf.star (3.0 or 3.1+ layout)."""
    import os
    from ..io.coordinates import read_star_blocks
    if not os.path.isfile(path):
        raise InputError(f"--ctf {path}: no such file")
    tables = read_star_blocks(path)
    micrographs = tables.get("micrographs") or next(
        (t for t in tables.values() if t.hasColumn("rlnDefocusU")), None)
    if micrographs is None:
        raise InputError(f"--ctf {path}: no micrographs block with _rlnDefocusU")
    for column in MICROGRAPH_COLUMNS:
        if not micrographs.hasColumn(column):
            raise InputError(f"--ctf {path}: column _{column} is missing")
    optics = {}
    if "optics" in tables:
        for row in tables["optics"]:
            optics[str(row.rlnOpticsGroup)] = row
    result = {}
    for row in micrographs:
        source = row
        if not all(micrographs.hasColumn(c) for c in OPTICS_COLUMNS):
            group = str(getattr(row, "rlnOpticsGroup", "1"))
            if group not in optics:
                raise InputError(f"--ctf {path}: no optics (_rlnVoltage, _rlnSphericalAberration,"
                                 f" _rlnAmplitudeContrast) for optics group {group}")
            source = optics[group]
        stem = os.path.splitext(os.path.basename(row.rlnMicrographName))[0]
        result[stem] = CTFParams(
            float(row.rlnDefocusU), float(row.rlnDefocusV), float(row.rlnDefocusAngle),
            float(source.rlnVoltage), float(source.rlnSphericalAberration),
            float(source.rlnAmplitudeContrast), float(getattr(row, "rlnPhaseShift", 0.0)))
    return result


def write_ctf_star(path, ctfs):
    """A RELION 3.1-style micrographs_ctf.star for {micrograph name: CTFParams} (one optics
    group per distinct voltage/Cs/amplitude contrast)."""
    groups = {}
    for params in ctfs.values():
        groups.setdefault((params.voltage, params.spherical_aberration, params.amplitude_contrast),
                          len(groups) + 1)
    with open(path, "w") as f:
        f.write("\ndata_optics\n\nloop_\n_rlnOpticsGroup #1\n_rlnVoltage #2\n"
                "_rlnSphericalAberration #3\n_rlnAmplitudeContrast #4\n")
        for (voltage, cs, a), group in groups.items():
            f.write(f"{group} {voltage:g} {cs:g} {a:g}\n")
        f.write("\n\ndata_micrographs\n\nloop_\n_rlnMicrographName #1\n_rlnOpticsGroup #2\n"
                "_rlnDefocusU #3\n_rlnDefocusV #4\n_rlnDefocusAngle #5\n_rlnPhaseShift #6\n")
        for name, p in ctfs.items():
            group = groups[(p.voltage, p.spherical_aberration, p.amplitude_contrast)]
            f.write(f"{name} {group} {p.defocus_u:.2f} {p.defocus_v:.2f} {p.defocus_angle:.2f} "
                    f"{p.phase_shift:.2f}\n")
        f.write("\n")
