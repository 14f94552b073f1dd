"""``masnn data ACTION``: dataset tools (offline synthetic set, directory checks, ...).

Actions register with :func:`register_data_action` from their own modules, listed in
``_DATA_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib

from masnn._registry import Registry
from masnn.cli import Command, add_commands, register_command

#: Modules that register ``masnn data`` actions.
_DATA_MODULES: tuple[str, ...] = (
    "masnn.cli.data_synth",
    "masnn.cli.data_verify",
    "masnn.cli.data_export",
)

DATA_ACTIONS: Registry[Command] = Registry("data action")


def register_data_action(name: str, help: str, configure=None):  # type: ignore[no-untyped-def]
    """Register ``run(args) -> int`` as ``masnn data <name>``."""

    def deco(run):  # type: ignore[no-untyped-def]
        DATA_ACTIONS.add(name, Command(name, help, configure or (lambda p: None), run))
        return run

    return deco


def _configure(parser: argparse.ArgumentParser) -> None:
    for mod in _DATA_MODULES:
        importlib.import_module(mod)
    add_commands(parser, DATA_ACTIONS, dest="data_action", metavar="ACTION", run_key="_data_run")


@register_command("data", "Dataset tools: synthetic offline set, directory checks.", _configure)
def _run(args: argparse.Namespace) -> int:
    run = getattr(args, "_data_run", None)
    if run is None:
        raise ValueError(f"masnn data needs an action; allowed: {DATA_ACTIONS.names()}")
    return int(run(args) or 0)
