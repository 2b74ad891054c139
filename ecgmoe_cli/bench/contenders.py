"""The models `ecgmoe bench` compares, built from one config and one task list.

- `ecgmoe`: the backbone once per batch, every task's LoRA adapter and head in one batched pass;
- `per_task`: one full model per task (no adapters), run one after another;
- `dense_multitask`: every MoE replaced by a dense FFN of the same total width, one head per task;
- `ecgmoe_merged`: one task only, its LoRA folded into the fusion weights (single-task serving).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.model.baselines import PerTaskModels, dense_multitask
from ecgmoe_cli.model.config import EcgMoeConfig
from ecgmoe_cli.model.ecgmoe import EcgMoe, count_parameters
from ecgmoe_cli.model.lora import lora_layers
from ecgmoe_cli.model.moe import MoE

MODELS = ("ecgmoe", "per_task", "dense_multitask", "ecgmoe_merged")

Batch = Mapping[str, Tensor]


@dataclass
class Contender:
    """One model under test: what to call, what it serves, and whether it has trained weights."""

    name: str
    module: nn.Module  # the eager module (parameters, FLOPs)
    tasks: list[str]  # tasks one call serves
    task_arg: list[str] | None  # passed as forward(batch, tasks=...); None: the module's own
    trained: bool
    runner: nn.Module | Callable[..., Any] | None = None  # torch.compile'd module, if any

    def __call__(self, batch: Batch) -> Any:
        fn = self.module if self.runner is None else self.runner
        return fn(batch) if self.task_arg is None else fn(batch, tasks=self.task_arg)

    def predict(self, batch: Batch) -> dict[str, Tensor]:
        """Probabilities / class probabilities / values per task, like EcgMoe.predict."""
        predict = getattr(self.module, "predict", None)
        if predict is None:
            raise EcgMoeError(f"model {self.name!r} has no predict")
        return predict(batch, self.tasks)  # type: ignore[no-any-return]


def merged_single_task(model: EcgMoe, task: str) -> EcgMoe:
    """A one-task EcgMoe without adapters whose fusion weights are base + that task's LoRA.

    The task's adapter is merged by the model's own path (`merge_adapter`, with its finite
    check) in a copy, so `model` itself is never touched.
    """
    if task not in model.tasks:
        raise EcgMoeError(f"model has no task {task!r}; it has {sorted(model.tasks)}")
    if any(layer.merged is not None for layer in lora_layers(model.fusion)):
        raise EcgMoeError("unmerge the model's adapter before building a merged copy")
    out = EcgMoe(dataclasses.replace(model.config, lora_rank=0), [model.tasks[task]])
    merged = copy.deepcopy(model)
    merged.merge_adapter(task)
    src = merged.state_dict()
    own = out.state_dict()
    missing = sorted(set(own) - set(src))
    if missing:
        raise EcgMoeError(f"cannot merge: the model lacks {missing[:3]}")
    out.load_state_dict({k: src[k] for k in own})
    out.heads[task].set_metadata(model.heads[task].metadata())  # type: ignore[operator]
    return out.to(next(model.parameters()).device).eval()


def active_parameters(module: nn.Module) -> int:
    """Parameters one record's forward touches: top-k of E experts, no SSL decoder."""
    unused = 0
    for m in module.modules():
        if isinstance(m, MoE):
            expert = sum(p.numel() for p in (m.w1, m.b1, m.w2, m.b2))
            unused += expert * (m.n_experts - m.top_k) // m.n_experts
        elif isinstance(m, EcgMoe):  # the SSL decoder only trains
            unused += count_parameters(m.ssl_decoder) + m.mask_token.numel()
    return count_parameters(module) - unused


def load_baselines(directory: Path, tasks: Sequence[str], spec: Any = None
                   ) -> dict[str, nn.Module]:
    """Trained baselines (`benchmarks/train_baselines.py`): DIR/dense_multitask/ and
    DIR/per_task/<task>/, weights folders like weights/. A baseline absent stays untrained;
    `spec`, when given, must be the one every baseline was trained on (the dataset's)."""
    from ecgmoe_cli.weights.store import load_model

    directory = Path(directory)

    def load(path: Path, wanted: Sequence[str]) -> EcgMoe:
        model, got, _ = load_model(path, wanted)
        if spec is not None and got != spec:
            raise EcgMoeError(f"trained on preprocessing spec {got.hash()}, the dataset has "
                              f"{spec.hash()}", path)
        return model

    out: dict[str, nn.Module] = {}
    if (directory / "dense_multitask").is_dir():
        dense = load(directory / "dense_multitask", tasks)
        if not dense.config.dense_moe:
            raise EcgMoeError("holds a model with MoE layers, not dense_multitask",
                              directory / "dense_multitask")
        out["dense_multitask"] = dense
    if (directory / "per_task").is_dir():
        missing = [t for t in tasks if not (directory / "per_task" / t).is_dir()]
        if missing:
            raise EcgMoeError(f"no per_task model for {missing}", directory / "per_task")
        out["per_task"] = PerTaskModels({t: load(directory / "per_task" / t, [t]) for t in tasks})
    if not out:
        raise EcgMoeError("holds neither dense_multitask/ nor per_task/ (made by "
                          "benchmarks/train_baselines.py)", directory)
    return out


def build_contenders(names: Sequence[str], config: EcgMoeConfig, tasks: Sequence[Any],
                     trained: EcgMoe | None = None, seed: int = 0,
                     baselines: Mapping[str, nn.Module] | None = None) -> list[Contender]:
    """The requested models in MODELS order; `trained` (loaded weights) serves as `ecgmoe`,
    `baselines` (loaded by `load_baselines`) as per_task / dense_multitask."""
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise EcgMoeError(f"unknown bench models {unknown}; known: {', '.join(MODELS)}")
    if not tasks:
        raise EcgMoeError("no task to benchmark")
    task_names = [t.name for t in tasks]
    baselines = baselines or {}
    torch.manual_seed(seed)
    ecgmoe = trained if trained is not None else EcgMoe(config, tasks)
    out = []
    for name in (n for n in MODELS if n in names):
        if name == "ecgmoe":
            out.append(Contender(name, ecgmoe, task_names, task_names, trained is not None))
        elif name in baselines:
            out.append(Contender(name, baselines[name], task_names,
                                 None if name == "per_task" else task_names, True))
        elif name == "per_task":
            torch.manual_seed(seed)
            out.append(Contender(name, PerTaskModels.fresh(config, tasks), task_names, None, False))
        elif name == "dense_multitask":
            torch.manual_seed(seed)
            out.append(Contender(name, dense_multitask(config, tasks), task_names, task_names,
                                 False))
        else:
            merged = merged_single_task(ecgmoe, task_names[0])
            out.append(Contender(name, merged, task_names[:1], task_names[:1],
                                 trained is not None))
    return out
