"""``xmipp_deep_consensus``: Deep Consensus particle screening from the command line.

One module per subcommand, each with ``add_args(parser)`` and ``main(args)``.
"""
import argparse
import os
import sys

from ..errors import FieldError, InputError

COMMANDS = ("screen", "train", "score", "demo", "scipion-demo", "relion-external")
STAGE_MODULE = "stages"   # init, prepare, fit, predict, finish, evaluate


def build_parser():
    import importlib
    parser = argparse.ArgumentParser(
        prog="xmipp_deep_consensus",
        description="Deep Consensus: screen the particles of several pickers with a CNN "
                    "trained on their agreement.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
        doc = (module.__doc__ or "").strip()
        p = sub.add_parser(name, help=doc.splitlines()[0] if doc else None, description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_args(p)
        p.set_defaults(func=module.main)
    stages = importlib.import_module(f"{__name__}.{STAGE_MODULE}")
    for name, summary in stages.DESCRIPTIONS.items():
        p = sub.add_parser(name, help=summary, description=summary + ".\n\n" + stages.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        stages.add_args(p, name)
        p.set_defaults(func=lambda args, name=name: stages.main(args, name))
    return parser


def main(argv=None):
    # TensorFlow's C++ start-up chatter (oneDNN notices, graph warnings) drowns the progress
    # lines; Python-level errors still surface. Set TF_CPP_MIN_LOG_LEVEL to see it again.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "takes_parameters", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.parameters = rest   # relion-external: RELION's --label value parameters
    try:
        return args.func(args) or 0
    except InputError as error:
        return _fail(args, error)
    except KeyboardInterrupt:
        print(f"xmipp_deep_consensus {args.command}: interrupted; run the same command again "
              "to continue where it stopped", file=sys.stderr)
        return 130
    except OSError as error:   # a full disk, a file that cannot be read: no traceback
        import errno
        where = f"{error.filename}: " if error.filename else ""
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = "make it readable (an input) or writable (an output)"
        elif error.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = "free space or choose a writable folder"
        else:
            fix = "check the file and the disk"
        return _fail(args, f"{where}{error.strerror or error}; {fix}, then run the same "
                           "command again")


def _fail(args, message):
    if isinstance(message, FieldError):    # the engine's: worded with this process's names
        from ..run.request import names
        message = message.line(names())
    print(f"xmipp_deep_consensus {args.command}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
