"""Which torch device a command runs on: checked once, with a message a user can act on."""

from __future__ import annotations

import torch

from ecgmoe_cli.errors import EcgMoeError


def resolve_device(device: str) -> str:
    """'cpu', 'cuda' or 'cuda:N'; a CUDA request on a machine without CUDA is a user error."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        why = (f"the installed torch {torch.__version__} is a CPU build" if torch.version.cuda
               is None else f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no GPU")
        raise EcgMoeError(f"--device {device} requested but CUDA is not available here ({why}); "
                          "use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise EcgMoeError(f"unknown device {device!r} (use cpu or cuda)")
    return device
