"""`ecgmoe bench`: not yet built."""

from ecgmoe_cli.errors import EcgMoeError


def run() -> None:
    """Not yet built."""
    raise EcgMoeError("`ecgmoe bench` is not yet built")
