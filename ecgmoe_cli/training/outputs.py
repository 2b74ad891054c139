"""The one loop that runs a model over dataset rows and gathers its outputs per task.

`raw_outputs` (logits, for calibration), `decoded_outputs` (the same from cached backbone
features) and `predictions` (what predict reports, for evaluate) differ only in the call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.model.batch import to_torch
from ecgmoe_cli.signal.leads import CANONICAL_LEADS
from ecgmoe_cli.training.encoded import cached_features, features_to_torch
from ecgmoe_cli.training.loop import ToBatch, iterate_batches

Call = Callable[[dict[str, torch.Tensor], list[str]], dict[str, torch.Tensor]]


def model_outputs(model: Any, data: Any, rows: np.ndarray, tasks: Sequence[str],
                  batch_size: int, device: str, call: Call, to_batch: ToBatch = to_torch
                  ) -> dict[str, np.ndarray]:
    """`call(batch, tasks)` over `rows` of `data` in batches, in eval mode without gradients;
    {task: (len(rows), n_outputs)} in row order."""
    names = list(tasks)
    model.eval()
    chunks: dict[str, list[np.ndarray]] = {t: [] for t in names}
    with torch.no_grad():
        for batch, _ in iterate_batches(data, rows, [], batch_size, device, to_batch):
            out = call(batch, names)
            for t in names:
                chunks[t].append(out[t].float().cpu().numpy())
    return {t: np.concatenate(v) if v else np.zeros((0, model.tasks[t].n_outputs))
            for t, v in chunks.items()}


def raw_outputs(model: Any, ds: Any, rows: np.ndarray, tasks: Sequence[str],
                batch_size: int, device: str) -> dict[str, np.ndarray]:
    """Raw head outputs (logits / scaled values) of `tasks` over `rows`, in row order."""
    return model_outputs(model, ds, rows, tasks, batch_size, device,
                         lambda batch, names: model(batch, tasks=names)[0])


def decoded_outputs(model: Any, encoded: Any, rows: np.ndarray, tasks: Sequence[str],
                    batch_size: int, device: str) -> dict[str, np.ndarray]:
    """`raw_outputs` from cached backbone features (finetune: the backbone is frozen)."""
    return model_outputs(model, encoded, rows, tasks, batch_size, device,
                         lambda f, names: model.decode(cached_features(f), names),
                         features_to_torch)


def keep_leads(leads: Sequence[str] | None) -> ToBatch:
    """A batch converter that keeps only `leads` (the rest masked, as if never recorded)."""
    if not leads:
        return to_torch
    lower = {n.lower(): i for i, n in enumerate(CANONICAL_LEADS)}
    unknown = [n for n in leads if n.lower() not in lower]
    if unknown:
        raise EcgMoeError(f"unknown leads {unknown}; use names of {', '.join(CANONICAL_LEADS)}")
    keep = np.zeros(len(CANONICAL_LEADS), bool)
    keep[[lower[n.lower()] for n in leads]] = True

    def convert(arrays: dict[str, np.ndarray], device: str) -> dict[str, torch.Tensor]:
        arrays = dict(arrays)
        arrays["lead_mask"] = arrays["lead_mask"] & keep
        arrays["signal"] = arrays["signal"] * keep[:, None]
        return to_torch(arrays, device)

    return convert


def predictions(model: Any, ds: Any, rows: np.ndarray, tasks: Sequence[str],
                batch_size: int, device: str, leads: Sequence[str] | None = None
                ) -> dict[str, np.ndarray]:
    """What predict reports: calibrated probabilities, class probabilities or unit values."""
    return model_outputs(model, ds, rows, tasks, batch_size, device,
                         lambda batch, names: model.predict(batch, names), keep_leads(leads))
