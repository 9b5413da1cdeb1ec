"""Run as a RELION 3.1 External job: screen a RELION project's picks, output RELION coordinates.

RELION's External job calls:
  xmipp_deep_consensus relion-external --o External/job005/ \\
      --in_mics Import/job001/micrographs.star \\
      --in_coords AutoPick/job002/coords_suffix_autopick.star \\
      --coordinates2 AutoPick/job003/ --box-size 128 --j 4

Set in the External job: 'External executable' = `xmipp_deep_consensus relion-external`,
'Input micrographs' and 'Input coordinates' (the first picker), and as parameters any option of
`xmipp_deep_consensus screen` without its dashes (label `box-size`, value `128`): at least
`box-size`, and the other pickers as `coordinates2`, `coordinates3`... (an AutoPick or
ManualPick job folder, its coords_suffix_*.star, a cryoSPARC .cs or a folder of coordinate
files named after the micrographs). A flag takes the value yes or no. The pixel size comes from
the micrographs STAR, the threads from 'Number of threads'.

Writes into the job folder: the kept particles as RELION coordinates (<mic>_deepcons.star with
the score as _rlnAutopickFigureOfMerit), the node coords_suffix_deepcons.star that Extract
takes as 'Input coordinates', RELION_OUTPUT_NODES.star and RELION_JOB_EXIT_SUCCESS, or
RELION_JOB_EXIT_FAILURE with the reason in run.err. The screen's run folder is deepcons/ in the
job folder (its screen.log, score_histogram.png, candidates.star): continuing the job
continues the run.
"""
import argparse
import os
import re
import shutil
import sys
import traceback

from ..errors import FieldError, InputError
from ..io import relion_project as relion
from . import screen

NODE_NAME = "deepcons"
RUN_FOLDER = "deepcons"
PICKER_FOLDER = "pickers"
SET_BY_RELION = {"micrographs": "--in_mics (Input micrographs)", "output": "--o (the job)",
                 "o": "--o (the job)"}
_PICKER = re.compile(r"coordinates\d*")
_YES, _NO = ("", "yes", "true", "on", "1"), ("no", "false", "off", "0")


def add_args(parser):
    parser.allow_abbrev = False   # a parameter must never be taken for a prefix of these
    parser.add_argument("--o", dest="job", metavar="JOBDIR", help="the job folder (RELION)")
    parser.add_argument("--in_mics", metavar="STAR", help="micrographs STAR (RELION 3.1)")
    parser.add_argument("--in_coords", metavar="STAR",
                        help="the first picker: a coords_suffix_*.star or its job folder")
    parser.add_argument("--j", metavar="THREADS", help="threads (RELION's 'Number of threads')")
    for name in ("--in_movies", "--in_parts", "--in_3dref", "--in_mask"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.set_defaults(takes_parameters=True)   # the --label value pairs: see main()


def main(args):
    """Run the job; the outcome goes to the exit file RELION polls, the reason to stderr
    (RELION appends it to the job's run.err)."""
    if not args.job:
        raise InputError("--o: no job folder; RELION's External job passes it (run this as "
                         "the job's 'External executable')")
    job = args.job
    os.makedirs(job, exist_ok=True)
    relion.clear_exit(job)
    try:
        kept = run_job(args, job)
    except FieldError as error:      # the engine's: named as this job's parameters
        return _failed(job, f"error: {error.line(job_names())}", 2)
    except InputError as error:
        return _failed(job, f"error: {error}", 2)
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        return _failed(job, f"error: {where}{error.strerror or error}", 2)
    except BaseException as error:
        traceback.print_exc()
        return _failed(job, f"error: {type(error).__name__}: {error}", 1)
    print(f"relion-external: {kept} particles kept; Extract's 'Input coordinates': "
          f"{os.path.join(job, f'{relion.SUFFIX_PREFIX}_{NODE_NAME}.star')}", flush=True)
    relion.mark_exit(job, success=True)
    return 0


def job_names():
    """The run's fields as this job shows them: the External job's parameters (``parameter
    --box-size``) and, for what RELION fills in, the job's own inputs."""
    from ..run.request import flags
    names = {field: f"parameter {flag}" if flag.startswith("--") else flag
             for field, flag in flags().items()}
    names.update(output=SET_BY_RELION["output"],
                 n_pickers="--in_coords and the coordinates parameters",
                 pixel_size="parameter --sampling (default: the micrographs STAR's pixel size)")
    return names


def _failed(job, message, status):
    print(f"xmipp_deep_consensus relion-external: {message}", file=sys.stderr, flush=True)
    relion.mark_exit(job, success=False)
    return status


def run_job(args, job):
    """Screen the job's inputs with `screen`'s own engine, then write the RELION outputs;
    returns how many particles were kept."""
    for name in ("in_movies", "in_parts", "in_3dref", "in_mask"):
        if getattr(args, name):
            raise InputError(f"--{name}: not used by Deep Consensus; leave that input of the "
                             "External job empty")
    if not args.in_mics:
        raise InputError("--in_mics: no micrographs; set the External job's 'Input "
                         "micrographs' to a micrographs STAR (e.g. Import/job001/micrographs.star)")
    micrographs, pixel_size = relion.read_micrographs(args.in_mics)
    if not micrographs:
        raise InputError(f"--in_mics {args.in_mics}: lists no micrographs")
    present = [m for m in micrographs if os.path.isfile(m)]
    if not present:
        raise InputError(f"--in_mics {args.in_mics}: none of its {len(micrographs)} "
                         f"micrographs exists (e.g. {micrographs[0]}); run the job from the "
                         "RELION project folder")
    parameters = parse_parameters(getattr(args, "parameters", []))
    screen_args = screen_arguments(args, job, parameters, micrographs, present, pixel_size)
    screen.main(screen_args)
    return write_relion_outputs(job, args.in_mics, micrographs, screen_args.output)


def parse_parameters(tokens):
    """RELION's ``--label value`` parameters as [(label, [values])], in order."""
    parameters = []
    for token in tokens:
        if token.startswith("--") and len(token) > 2:
            parameters.append((token[2:], []))
        elif parameters:
            parameters[-1][1].append(token)
        else:
            raise InputError(f"parameter value {token!r} without a label; give the External "
                             "job's parameters as label (without dashes) and value")
    return parameters


class _ScreenOptions(argparse.ArgumentParser):
    """`screen`'s options, with a refusal as an InputError (RELION shows run.err, not usage)."""

    def error(self, message):
        unknown = re.match(r"unrecognized arguments: (--?\S+)", message)
        if unknown:
            raise InputError(f"parameter {unknown.group(1)}: not an option of "
                             "`xmipp_deep_consensus screen`; see its --help for the labels")
        raise InputError(f"parameters: {message}")


def screen_parser():
    parser = _ScreenOptions(prog="xmipp_deep_consensus relion-external", add_help=False,
                            allow_abbrev=False)
    screen.add_args(parser)
    return parser


def screen_arguments(args, job, parameters, micrographs, present, pixel_size):
    """The `screen` command line this job stands for, parsed by `screen`'s own parser."""
    parser = screen_parser()
    flags = {option: action for option, action in parser._option_string_actions.items()
             if action.nargs == 0}
    pickers = [("--in_coords", args.in_coords)] if args.in_coords else []
    argv, given = [], set()
    for label, values in parameters:
        key = label.replace("_", "-")
        option = "--" + key
        if key in SET_BY_RELION:
            raise InputError(f"parameter --{label}: set by the External job from "
                             f"{SET_BY_RELION[key]}; remove the parameter")
        if _PICKER.fullmatch(key):
            if len(values) != 1:
                raise InputError(f"parameter --{label}: give one picking job (e.g. "
                                 "AutoPick/job004/) per coordinates parameter")
            pickers.append((f"--{label}", values[0]))
            continue
        if option not in parser._option_string_actions:
            raise InputError(f"parameter --{label}: not an option of `xmipp_deep_consensus "
                             "screen`; see its --help for the labels")
        given.add(key)
        if option in flags:
            argv += flag_arguments(label, option, values, flags[option])
        else:
            argv += [option] + values
    if not pickers:
        raise InputError("--in_coords: no coordinates; set the External job's 'Input "
                         "coordinates' to a picking job's coords_suffix_*.star")
    stage = os.path.join(job, PICKER_FOLDER)
    shutil.rmtree(stage, ignore_errors=True)   # the job's own copies, remade on every run
    for number, (option, source) in enumerate(pickers, 1):
        argv += ["--coordinates", picker_source(option, source, micrographs,
                                                os.path.join(stage, f"picker{number}"))]
    if "sampling" not in given and pixel_size:
        argv += ["--sampling", f"{pixel_size:g}"]
    if "threads" not in given and args.j:
        argv += ["--threads", args.j]
    argv += ["--micrographs"] + present + ["-o", os.path.join(job, RUN_FOLDER)]
    return parser.parse_args(argv)


def flag_arguments(label, option, values, action):
    """A flag given as a RELION parameter (which always has a value field): yes or no."""
    answer = " ".join(values).strip().lower()
    if answer in _YES:
        return [option]
    if answer in _NO:
        negative = "--no-" + option[2:]
        return [negative] if negative in action.option_strings else []
    raise InputError(f"parameter --{label} {' '.join(values)}: a switch; give the value yes "
                     "or no")


def picker_source(option, source, micrographs, stage):
    """What `screen --coordinates` reads for one picker. A RELION picking job (its folder or
    coords_suffix file) becomes a folder of links named after the micrographs; a .cs file or a
    folder of coordinate files is read as it is."""
    if not os.path.exists(source):
        raise InputError(f"{option} {source}: no such file or folder; give a picking job "
                         "(e.g. AutoPick/job004/) as a path from the project folder")
    is_job = (os.path.isdir(source) and os.path.isfile(os.path.join(source, "job.star"))) \
        or os.path.basename(source).startswith(relion.SUFFIX_PREFIX)
    if not is_job:
        return source
    files = relion.picker_coordinate_files(source, micrographs, option)
    os.makedirs(stage, exist_ok=True)
    for name, path in files.items():
        link = os.path.join(stage, screen.stem_of(name) + ".star")
        if os.path.lexists(link):
            raise InputError(f"{option} {source}: two micrographs named "
                             f"{screen.stem_of(name)} in --in_mics; coordinates are matched "
                             "by file name, so names must be unique")
        os.symlink(os.path.relpath(os.path.realpath(path), stage), link)
    return stage


def write_relion_outputs(job, micrographs_star, micrographs, run_folder):
    """The kept particles of the screen as RELION coordinates, one file per micrograph of
    --in_mics (empty where none was kept), the node Extract reads, and the output nodes."""
    from ..run.folder import RunFolder
    run = RunFolder(run_folder)
    settings = run.settings()
    threshold = run.threshold(settings)[0]
    kept = {}
    for stem, *_ in run.ledger():
        keep = run.kept(stem, settings, threshold)
        if keep is not None:
            kept[stem] = (run.candidates(stem)["xy"][keep],
                          run.final_scores(stem, settings)[keep])
    total = 0
    for name in micrographs:
        xy, score = kept.get(screen.stem_of(name), ((), ()))
        relion.write_coordinates(relion.coordinate_file(job, name, f"_{NODE_NAME}.star"),
                                 xy, score)
        total += len(score)
    node = relion.write_suffix_file(job, NODE_NAME, micrographs_star)
    relion.write_output_nodes(job, [(node, relion.NODE_MIC_COORDS)])
    return total
