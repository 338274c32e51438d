"""The subcommand registry: each command module decorates an ``add_arguments(parser) -> handler`` function."""
from __future__ import annotations

COMMANDS: dict = {}


def command(name: str, help: str):
    """Register a subcommand: the decorated function adds its arguments and returns the handler."""

    def register(add_arguments):
        COMMANDS[name] = (help, add_arguments)
        return add_arguments

    return register
