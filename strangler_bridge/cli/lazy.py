"""A click group that imports a subcommand only when it runs, so ``--help`` stays fast and extras optional.

Besides its own table, the group takes the commands other installed packages register under the
``strangler_bridge.commands`` entry-point group (as Flask's ``flask.commands``): the service registers ``api``
and ``worker`` that way, so this core package names no module of the service.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

import click

#: The entry-point group through which installed packages add commands.
PLUGIN_GROUP = "strangler_bridge.commands"


class LazyGroup(click.Group):
    """Subcommands given as ``{"name": "package.module:attribute"}``, imported on first use."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = {entry.name: entry.value for entry in entry_points(group=PLUGIN_GROUP)} | dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module_name, attribute = self.lazy[cmd_name].split(":")
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                if (exc.name or "").split(".")[0] in ("strangler_bridge", "fastapi_app", "flask_plugin"):
                    raise
                raise click.ClickException(
                    f"'{cmd_name}' needs an optional dependency that is not installed ({exc.name}). "
                    "Install it with: pip install 'strangler-bridge[all]'"
                ) from exc
            command = getattr(module, attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)
