"""`ecgmoe finetune`: not yet built."""

from ecgmoe_cli.errors import EcgMoeError


def run() -> None:
    """Not yet built."""
    raise EcgMoeError("`ecgmoe finetune` is not yet built")
