"""The ``lrt-jax`` command line.

Each subcommand lives in its own module of this package and defines
``register(subparsers)``, which adds its parser and sets ``func`` to the function that
runs it; :func:`main` discovers the modules, so adding a command is adding a file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from lrt_jax.sites import UnknownSiteError

__all__ = ["ANTICIPATED_ERRORS", "build_parser", "main"]

# Errors raised on purpose at a boundary, each with a message that names the fix.
ANTICIPATED_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
                      UnknownSiteError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lrt-jax",
        description="Capture, map, steer and evaluate language-model representations.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}").register(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; results written so far are kept.", file=sys.stderr)
        return 130
    except ANTICIPATED_ERRORS as error:
        # Our errors carry actionable messages; a traceback would bury them. A KeyError or
        # TypeError is a bug (ours or a library's) and keeps its traceback.
        message = error.args[0] if isinstance(error, UnknownSiteError) and error.args else error
        print(f"lrt-jax {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
