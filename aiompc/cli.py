"""The ``aiompc`` command: ``demo`` (the README's main job), ``run``, ``serve``, ``infer``, ``bench``, ``eval``,
``linearize``.

Subcommands are implemented in the modules they belong to (:mod:`aiompc.nn.commands`); errors of
aiompc's own hierarchy are printed as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from aiompc.nn.bench import add_bench_command
    from aiompc.nn.commands import add_commands
    from aiompc.nn.eval_cli import add_eval_command
    from aiompc.nn.linearize_cli import add_linearize_command

    from aiompc import __version__

    parser = argparse.ArgumentParser(prog="aiompc", description="Private two-party inference for quantized networks.")
    parser.add_argument("--version", action="version", version=f"aiompc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    add_bench_command(sub)
    add_eval_command(sub)
    add_linearize_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from aiompc.nn.commands import run_cli

    args = build_parser().parse_args(argv)
    try:
        return run_cli(args.func, args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
