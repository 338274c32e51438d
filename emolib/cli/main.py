"""Command line: ``emolib COMMAND ...`` (also ``python -m emolib``).

Every command turns expected failures (bad files, missing weights, missing devices)
into one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import EmolibError
from .registry import COMMANDS


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block), exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``emolib`` parser with every registered subcommand."""
    from . import train_commands  # noqa: F401  registers synth, index, train, evaluate, demo
    from . import infer_commands  # noqa: F401  registers predict, timeline, live, bench
    from . import doctor  # noqa: F401  registers doctor
    from . import data_commands  # noqa: F401  registers download, verify
    from . import kaggle_commands  # noqa: F401  registers kaggle

    parser = OneLineParser(prog="emolib", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (help, add_arguments) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=add_arguments(sub))
    return parser


def main(argv=None) -> int:
    """Entry point of the ``emolib`` console script."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, or a bad argument (already reported in one line)
        return stop.code if isinstance(stop.code, int) else 2
    try:
        code = args.handler(args)
    except EmolibError as error:
        print(f"emolib {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a missing file, a folder where a file was expected, no permission, a full disk, ...
        where = f"{error.filename}: " if error.filename else ""
        print(f"emolib {args.command}: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"emolib {args.command}: interrupted", file=sys.stderr)
        return 130
    return code or 0
