"""What every command shares: the consoles and the one place project errors become a red line."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from ecgmoe_cli.errors import EcgMoeError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def split_list(*values: str | None) -> list[str]:
    """A comma-separated option (given once or repeated) as its non-empty, stripped items."""
    return [v.strip() for value in values if value for v in value.split(",") if v.strip()]


def cli_errors(fn: F) -> F:
    """Turn EcgMoeError (a user's bad input) into one red line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EcgMoeError as e:
            err_console.print(f"[red]error:[/] {e}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
