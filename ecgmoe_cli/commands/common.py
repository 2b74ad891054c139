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


def interrupted(e: BaseException) -> bool:
    """Whether `e` is Ctrl-C, or an error raised while Ctrl-C unwound: an interrupt that lands
    inside `threading.Condition.wait` leaves its lock unheld, and the `with` around it then
    fails with "cannot release un-acquired lock" in place of the KeyboardInterrupt."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__context__
    return False


def cli_errors(fn: F) -> F:
    """Turn EcgMoeError (a user's bad input) into one red line on stderr and exit code 1, and
    Ctrl-C into "interrupted" and exit code 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EcgMoeError as e:
            err_console.print(f"[red]error:[/] {e}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except BaseException as e:  # Ctrl-C, as itself or inside what it broke
            if not interrupted(e):
                raise
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
