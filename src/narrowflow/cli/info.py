"""`narrowflow info`: versions and how the kernels were built."""
from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("info", help="show versions, OpenMP and thread count")
    p.set_defaults(func=run)


def run(args) -> int:
    from narrowflow import build_info
    for key, value in build_info().items():
        print(f"{key:>16}: {value}")
    return 0
