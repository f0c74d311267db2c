"""The `narrowflow` command line: one sub-command per module in this package.

Each sub-command module defines ``add_parser(subparsers)`` (registers its
arguments and sets ``func``) and is listed in ``_SUBCOMMANDS``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

_SUBCOMMANDS = ("run", "monodromy", "report", "info")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="narrowflow",
        description="Gradient flows of narrow two-layer networks: ensembles and monodromy.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMANDS:
        try:
            module = importlib.import_module(f"narrowflow.cli.{name}")
        except ModuleNotFoundError as exc:  # a sub-command not built yet
            if exc.name != f"narrowflow.cli.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, OSError, ImportError) as exc:
        # a refusal (bad config or argument, an output folder that cannot take the results, a
        # file that cannot be read): one line, exit status 2, no traceback
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"narrowflow {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C: the kernel stops within one step; nothing half-written is left as a result
        print(f"narrowflow {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
