"""Deep Consensus where no picker is precise: weak real pickers on 4 EMPIAR-10017 micrographs.

RELION LoG, Topaz's general model, DeepPicker (and crYOLO), screened against the reference.

usage: python benchmarks/weak_pickers.py [--data ../shared/data/empiar10017] [--out bench_weak]
                                         [--sets weak3,weak2,mixed] [--micrographs 0,1]
                                         [--reuse] [--run-pickers [--pickers-only]]
                                         [-- extra screen options]

Screens, with the default parameters (plus any options after --), each picker set of
empiar10017.WEAK_SETS:
  weak3  RELION LoG, Topaz general (score > -1), DeepPicker
  weak2  RELION LoG, Topaz general
  mixed  crYOLO, RELION LoG, Topaz general
and prints for each one Markdown table: every picker, the union (ROC-AUC / AP of its candidates
ranked by vote count), the 2-of-N vote and the screened particles (picks, precision, recall, F1
at match radius 54 px; ROC-AUC / AP of the union's candidates ranked by score).

--micrographs 0,1 takes those of the 4 micrographs (sorted by name, counted from 0), so settings
can be chosen on some and reported on the others; its inputs are links in
OUT/empiar10017_mics0_1/ (only those micrographs, their truth and picks).

--run-pickers runs the two pickers again here, as the data README says, instead of using its
picks_here/ (so anyone can reproduce the inputs):
  RELION LoG   relion_autopick (3.1; `apt-get install -y relion` when missing and root) on a
               micrographs STAR with a data_optics block (1.77 A/px, 300 kV, Cs 2.0, Q0 0.1):
               relion_autopick --i mics.star --odir AutoPick/ --pickname autopick --LoG
               --LoG_diam_min 160 --LoG_diam_max 220 --angpix 1.77 --shrink 0 --lowpass 20
               --LoG_adjust_threshold 0.5                                   (about 2 s/micrograph)
  Topaz general  topaz-em from PyPI in its own venv OUT/topaz_venv (never in the project's
               requirements; it pulls torch: about 6 GB): topaz preprocess -s 8, then
               topaz extract -m resnet16_u64 -r 7 -x 8 (coordinates scaled back by 8); keeps
               score > -1 (topazGeneral) and every pick (topazGeneralAll)  (60-150 s/micrograph)
Both are read as the pickers write them (RELION's AutoPick job folder, Topaz's one extract
file) and written to OUT/pickers_here/coords/<picker>/<mic>.pos; the screen's inputs are then
OUT/empiar10017_rerun/ (or _mics0_1_rerun) and the screens OUT/<set>_rerun/screen. It prints how
the re-run picks compare with the shared ones: counts, and the fraction of shared picks with a
re-run pick within 20 px. When Topaz cannot be installed or run, it says why in one line and
keeps the shared Topaz picks. --pickers-only stops there (no screen). Measured here: RELION
LoG gives the shared picks exactly (3273 on the 4 micrographs, every one within 20 px); Topaz
(0.3.20 with the CUDA build of torch 2.14.1 and torchvision 0.29.1 from PyPI, run on the CPU)
gives 748 and 753 picks in two runs against the shared 747 on micrograph 0 (0.99 of the
shared ones within 20 px) and 760 against 744 on micrograph 1 (0.97); likely source: its
preprocessing fits its normalisation on a sample of pixels.

Layout: OUT/empiar10017/ (prepared data, empiar10017.prepare), OUT/<set>[_<tag>]/screen (and
_seconds.txt). --reuse reuses a finished screen there (output options after -- still apply).
Each screen takes 10-20 minutes on 2 cores.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from scipy.spatial import cKDTree

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from empiar10017 import BOX, MATCH_RADIUS, WEAK_SETS, prepare  # noqa: E402
from screen_benchmark import evaluate, table, timed_screen  # noqa: E402
from xmipp3_deepcons.errors import InputError  # noqa: E402
from xmipp3_deepcons.io.coordinates import read_coordinates, write_pos  # noqa: E402
from xmipp3_deepcons.io.picker_outputs import PickerSpec, read_picker_output  # noqa: E402

APIX, VOLTAGE, CS, Q0 = 1.77, 300, 2.0, 0.1
RELION_LOG = ["--pickname", "autopick", "--LoG", "--LoG_diam_min", "160", "--LoG_diam_max",
              "220", "--angpix", str(APIX), "--shrink", "0", "--lowpass", "20",
              "--LoG_adjust_threshold", "0.5"]
TOPAZ_SCALE, TOPAZ_MODEL, TOPAZ_RADIUS, TOPAZ_MIN_SCORE = 8, "resnet16_u64", 7, -1.0
SAME_PICK_PX = 20
RERUN_PICKERS = ("relionLoG", "topazGeneral", "topazGeneralAll")


class Unavailable(Exception):
    """A picker that cannot run here; its message is the one line shown to the user."""


def parse_indices(text, n):
    """'0,1' as sorted indices below n; ValueError with the reason."""
    try:
        indices = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"'{text}' is not a comma-separated list of numbers") from None
    if not indices or indices[0] < 0 or indices[-1] >= n:
        raise ValueError(f"'{text}': give indices from 0 to {n - 1}, e.g. 0,1")
    return indices


def link(source, target):
    """A symlink target -> source, replacing an older link (never a real file)."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.islink(target):
        os.remove(target)
    elif os.path.exists(target):
        raise SystemExit(f"{target}: a file, not a link this benchmark made; "
                         "give another --out")
    os.symlink(os.path.abspath(source), target)


def inputs_folder(full, out, stems, picks_here, tag):
    """The prepared folder the screens read: the full one itself, or links to the chosen
    micrographs, their truth and every picker's picks (re-run pickers from ``picks_here``)."""
    if not tag:
        return full
    folder = os.path.join(out, "empiar10017_" + tag)
    pickers = sorted(os.listdir(os.path.join(full, "coords")))
    for stem in stems:
        link(os.path.join(full, "micrographs", stem + ".mrc"),
             os.path.join(folder, "micrographs", stem + ".mrc"))
        link(os.path.join(full, "truth", stem + ".csv"),
             os.path.join(folder, "truth", stem + ".csv"))
        for picker in pickers:
            source = os.path.join(picks_here.get(picker, os.path.join(full, "coords", picker)),
                                  stem + ".pos")
            if os.path.exists(source):
                link(source, os.path.join(folder, "coords", picker, stem + ".pos"))
    return folder


# ------------------------------------------------------------------------------ RELION LoG

def relion_available():
    """relion_autopick on PATH, installed from Debian when missing and root."""
    if shutil.which("relion_autopick"):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable("RELION LoG: relion_autopick is not on PATH and this is not root with "
                          "apt-get to install it; run `apt-get install -y relion` (Debian) or "
                          "put RELION 3.1's bin/ on PATH")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "relion"]):
        print("$ " + " ".join(command), flush=True)
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise Unavailable(f"RELION LoG: `{' '.join(command)}` failed ({last})")
    if not shutil.which("relion_autopick"):
        raise Unavailable("RELION LoG: apt-get install relion gave no relion_autopick")


def write_micrographs_star(path, names):
    """A RELION 3.1 micrographs STAR: one optics group (the data README's optics)."""
    with open(path, "w") as f:
        f.write("\ndata_optics\n\nloop_\n_rlnOpticsGroupName #1\n_rlnOpticsGroup #2\n"
                "_rlnMicrographPixelSize #3\n_rlnVoltage #4\n_rlnSphericalAberration #5\n"
                f"_rlnAmplitudeContrast #6\nopticsGroup1 1 {APIX} {VOLTAGE} {CS} {Q0}\n\n\n"
                "data_micrographs\n\nloop_\n_rlnMicrographName #1\n_rlnOpticsGroup #2\n")
        f.writelines(f"{name} 1\n" for name in names)


def run_relion(micrographs, folder):
    """RELION LoG on the micrographs in ``folder`` (links in Micrographs/, mics.star,
    AutoPick/); {stem: Coordinates} read from the job folder as RELION writes it."""
    relion_available()
    stems = [os.path.splitext(os.path.basename(m))[0] for m in micrographs]
    names = []
    for mic in micrographs:
        names.append(os.path.join("Micrographs", os.path.basename(mic)))
        link(mic, os.path.join(folder, names[-1]))
    write_micrographs_star(os.path.join(folder, "mics.star"), names)
    command = ["relion_autopick", "--i", "mics.star", "--odir", "AutoPick/"] + RELION_LOG
    print(f"$ (cd {folder} && {' '.join(command)})", flush=True)
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise Unavailable(f"RELION LoG: relion_autopick failed ({last}); see {folder}")
    return {"relionLoG": read_picker_output(os.path.join(folder, "AutoPick"), stems)}


# --------------------------------------------------------------------------- Topaz general

def topaz_available(venv):
    """Topaz in its own venv (pip install topaz-em there when missing); its `topaz` program."""
    topaz = os.path.join(venv, "bin", "topaz")
    if not os.path.exists(topaz):
        print(f"installing topaz-em in {venv} (its own venv; pulls torch: about 6 GB)",
              flush=True)
        for command in ([sys.executable, "-m", "venv", venv],
                        [os.path.join(venv, "bin", "pip"), "install", "topaz-em"]):
            print("$ " + " ".join(command), flush=True)
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no message"])[-1]
                raise Unavailable(f"Topaz general: `{' '.join(command[-3:])}` failed ({last}); "
                                  f"install topaz-em (PyPI) in {venv} by hand, or use the "
                                  "shared picks (leave out --run-pickers)")
    done = subprocess.run([topaz, "extract", "--help"], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise Unavailable(f"Topaz general: topaz in {venv} does not start ({last}); the data "
                          "README notes that the CPU-only torch has no matching torchvision on "
                          "the registry: pip install the CUDA build of torch and torchvision of "
                          "one release there (it runs on the CPU too)")
    return topaz


def run_topaz(micrographs, folder, venv):
    """Topaz's general model on the micrographs: preprocess -s 8, extract -x 8 (coordinates
    back in the micrographs' pixels) into one extract file; its picks above -1 and all."""
    topaz = topaz_available(venv)
    stems = [os.path.splitext(os.path.basename(m))[0] for m in micrographs]
    processed = os.path.join(folder, "processed")
    extracted = os.path.join(folder, "extracted.txt")
    os.makedirs(processed, exist_ok=True)
    for command in ([topaz, "preprocess", "-s", str(TOPAZ_SCALE), "-o", processed + "/"]
                    + list(micrographs),
                    [topaz, "extract", "-m", TOPAZ_MODEL, "-r", str(TOPAZ_RADIUS),
                     "-x", str(TOPAZ_SCALE), "-o", extracted]
                    + [os.path.join(processed, os.path.basename(m)) for m in micrographs]):
        print("$ " + " ".join(command[:2] + [c for c in command[2:] if not c.endswith(".mrc")])
              + f" <{len(micrographs)} micrographs>", flush=True)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise Unavailable(f"Topaz general: `topaz {command[1]}` failed ({last})")
    return {"topazGeneral": read_picker_output(PickerSpec(extracted, TOPAZ_MIN_SCORE), stems),
            "topazGeneralAll": read_picker_output(extracted, stems)}


# ------------------------------------------------------------------------------ re-running

def near_fraction(reference, picks, radius=SAME_PICK_PX):
    """Fraction of ``reference`` points with a point of ``picks`` within ``radius`` px."""
    if not len(reference):
        return float("nan")
    if not len(picks):
        return 0.0
    distance, _ = cKDTree(np.asarray(picks, dtype=float)).query(np.asarray(reference, float))
    return float((distance <= radius).mean())


def rerun_pickers(full, out, stems):
    """Run RELION LoG and Topaz's general model here on the chosen micrographs; write their
    picks as .pos; print how they compare with the shared ones. {picker: .pos folder} of
    those that ran."""
    micrographs = [os.path.join(full, "micrographs", s + ".mrc") for s in stems]
    base = os.path.join(out, "pickers_here")
    found = {}
    for name, runner in (("RELION LoG", lambda: run_relion(micrographs,
                                                            os.path.join(base, "relion"))),
                         ("Topaz general", lambda: run_topaz(micrographs,
                                                             os.path.join(base, "topaz"),
                                                             os.path.join(out, "topaz_venv")))):
        started = time.time()
        try:
            found.update(runner())
        except (Unavailable, InputError) as e:
            print(f"{e}; keeping the shared {name} picks (picks_here/)", flush=True)
            continue
        print(f"{name}: {time.time() - started:.0f} s for {len(stems)} micrographs "
              "(with any install)", flush=True)
    folders = {}
    lines = ["| picker | micrograph | shared picks | re-run picks | shared with a re-run pick "
             f"within {SAME_PICK_PX} px |", "|---|---|---|---|---|"]
    for picker, by_stem in found.items():
        folders[picker] = os.path.join(base, "coords", picker)
        os.makedirs(folders[picker], exist_ok=True)
        totals = [0, 0, 0.0]
        for stem in stems:
            picks = by_stem.get(stem)
            if picks is None:
                raise SystemExit(f"{picker}: no picks re-run for micrograph {stem}; "
                                 f"see {base}")
            write_pos(os.path.join(folders[picker], stem + ".pos"), picks.xy, picks.score,
                      score_label="cost")
            shared = read_coordinates(os.path.join(full, "coords", picker, stem + ".pos")).xy
            near = near_fraction(shared, picks.xy)
            totals[0] += len(shared)
            totals[1] += len(picks)
            totals[2] += near * len(shared)
            lines.append(f"| {picker} | {stem} | {len(shared)} | {len(picks)} | {near:.3f} |")
        lines.append(f"| {picker} | all | {totals[0]} | {totals[1]} "
                     f"| {totals[2] / max(totals[0], 1):.3f} |")
    if found:
        print("\nRe-run pickers against the shared picks (picks_here/):\n\n" + "\n".join(lines)
              + "\n", flush=True)
    return folders


# ------------------------------------------------------------------------------------ main

def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Details: the module's docstring (benchmarks/weak_pickers.py).")
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data",
                                                       "empiar10017"))
    parser.add_argument("--out", default="bench_weak")
    parser.add_argument("--sets", default=",".join(WEAK_SETS),
                        help="comma-separated picker sets: " + ", ".join(
                            f"{k} ({v})" for k, v in WEAK_SETS.items()))
    parser.add_argument("--micrographs", default=None,
                        help="comma-separated indices (0-3, sorted by name) of the micrographs "
                             "to screen and score, e.g. 0,1 (default: all 4)")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the trained model and scores of a finished screen in "
                             "OUT/<set>/screen (output options after -- still apply)")
    parser.add_argument("--run-pickers", action="store_true",
                        help="run RELION LoG and Topaz's general model here (apt-get relion, "
                             "topaz-em in OUT/topaz_venv when missing) instead of using the "
                             "shared picks")
    parser.add_argument("--pickers-only", action="store_true",
                        help="with --run-pickers: re-run the pickers, compare them with the "
                             "shared picks and stop (no screen)")
    parser.add_argument("extra", nargs="*", help="options passed to screen (after --)")
    args = parser.parse_args()
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in sets if s not in WEAK_SETS]
    if unknown or not sets:
        parser.error(f"--sets: unknown set {', '.join(unknown) or '(none)'}; "
                     f"choose from {', '.join(WEAK_SETS)}")
    if args.pickers_only and not args.run_pickers:
        parser.error("--pickers-only: give it with --run-pickers")
    data = os.path.abspath(args.data)
    if not os.path.isfile(os.path.join(data, "prepare.py")):
        parser.error(f"--data {args.data}: no prepare.py there; give the shared "
                     "data/empiar10017 folder")
    all_stems = sorted(os.path.splitext(os.path.basename(j))[0]
                       for j in glob.glob(os.path.join(data, "micrographs", "*.jpg")))
    indices = list(range(len(all_stems)))
    if args.micrographs is not None:
        try:
            indices = parse_indices(args.micrographs, len(all_stems))
        except ValueError as e:
            parser.error(f"--micrographs {e}")
    stems = [all_stems[i] for i in indices]

    out = os.path.abspath(args.out)
    full = prepare(data, os.path.join(out, "empiar10017"))
    tag = "" if len(stems) == len(all_stems) else "mics" + "_".join(map(str, indices))
    picks_here = {}
    if args.run_pickers:
        picks_here = rerun_pickers(full, out, stems)
        if picks_here:
            tag = "_".join(t for t in (tag, "rerun") if t)
    if args.pickers_only:
        return
    prepared = inputs_folder(full, out, stems, picks_here, tag)
    which = ("all 4 micrographs" if len(stems) == len(all_stems)
             else f"micrographs {', '.join(map(str, indices))} of 0-{len(all_stems) - 1}")
    source = (f"re-run here: {', '.join(sorted(picks_here))}" if picks_here
              else "picks from the shared data")
    for name in sets:
        pickers = WEAK_SETS[name].split(",")
        screened = os.path.join(out, "_".join(t for t in (name, tag) if t), "screen")
        os.makedirs(os.path.dirname(screened), exist_ok=True)
        seconds = timed_screen(prepared, screened, args.extra, pickers, BOX, args.reuse)
        print(f"\n### {name}: {', '.join(pickers)} ({which}; {source})\n", flush=True)
        print(table(*evaluate(prepared, screened, pickers, BOX, MATCH_RADIUS), seconds,
                    "Deep Consensus (defaults" + (" " + " ".join(args.extra) if args.extra
                                                  else "") + ")"), flush=True)


if __name__ == "__main__":
    main()
