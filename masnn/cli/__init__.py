"""The ``masnn`` console command and its subcommand registry.

Every subcommand lives in its own module under ``masnn/cli/`` and registers itself with
:func:`register_command`. ``main`` imports the modules named in ``_COMMAND_MODULES`` (the one
list to extend when a new subcommand lands), builds an ``argparse`` parser from the registry
and runs the chosen command.

User errors (bad config, missing file, unknown name) are reported as one line, without a
traceback; set ``MASNN_TRACEBACK=1`` to see the full stack.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from masnn._registry import Registry
from masnn.errors import MasnnError
from masnn.version import __version__

#: Modules that register subcommands, imported by :func:`main` in this order.
_COMMAND_MODULES: tuple[str, ...] = (
    "masnn.cli.selftest",
    "masnn.cli.data",
    "masnn.cli.train",
    "masnn.cli.export",
    "masnn.cli.bench",
    "masnn.cli.report",
)


@dataclass(frozen=True)
class Command:
    """A registered subcommand: its parser set-up and its entry point (returns an exit code)."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: Registry[Command] = Registry("command")


def register_command(
    name: str, help: str, configure: Callable[[argparse.ArgumentParser], None] | None = None
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Register ``run(args) -> int`` as ``masnn <name>``; ``configure(parser)`` adds its flags."""

    def deco(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS.add(name, Command(name, help, configure or (lambda p: None), run))
        return run

    return deco


def add_commands(
    parser: argparse.ArgumentParser,
    registry: Registry[Command],
    *,
    dest: str,
    metavar: str,
    run_key: str,
) -> None:
    """One sub-parser per registered :class:`Command` (``masnn COMMAND``, ``masnn data ACTION``);
    the chosen command's ``run`` lands in ``args.<run_key>``."""
    sub = parser.add_subparsers(dest=dest, metavar=metavar)
    for name in registry.names():
        cmd = registry.get(name)
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.configure(p)
        p.set_defaults(**{run_key: cmd.run})


def build_parser() -> argparse.ArgumentParser:
    """Import every command module and build the top-level parser."""
    for mod in _COMMAND_MODULES:
        importlib.import_module(mod)
    parser = argparse.ArgumentParser(
        prog="masnn", description="Attention spiking neural networks (MA-SNN), reference library."
    )
    parser.add_argument("--version", action="version", version=f"masnn {__version__}")
    add_commands(parser, COMMANDS, dest="command", metavar="COMMAND", run_key="_run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``masnn`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (MasnnError, ValueError, TypeError, KeyError, FileNotFoundError, ImportError) as exc:
        if os.environ.get("MASNN_TRACEBACK"):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"masnn {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except OSError as exc:  # environment faults not caught where they happened
        if os.environ.get("MASNN_TRACEBACK"):
            raise
        from masnn.fsutil import describe_os_error

        print(
            f"masnn {args.command}: error: {describe_os_error(exc, None, 'use')}", file=sys.stderr
        )
        return 2
    except KeyboardInterrupt:
        print(f"masnn {args.command}: interrupted", file=sys.stderr)
        return 130
