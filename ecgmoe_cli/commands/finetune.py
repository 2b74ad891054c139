"""`ecgmoe finetune`: one task's LoRA adapter and head on a frozen backbone.

Early stopping, a temperature and per-label thresholds all use the validation fold (9).
`--task beat_class` trains the per-beat head instead (boosted trees, heads/beat_class.*) on
folders of records with beat annotations (.atr), scored leave-records-out with --folds; of the
training options only --seed applies to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def run(
    dataset: Annotated[list[Path] | None, typer.Argument(
        metavar="DATASET", help="Dataset folder(s) made by `ecgmoe preprocess`, as `train` "
                                   "and `evaluate` take them; several of the same spec mix.")
                       ] = None,
    task: Annotated[list[str] | None, typer.Option(help="Task to fine-tune: a built-in name, or a "
                                            "labels.csv column with --kind. Repeat (or "
                                            "comma-separate) to train several adapters on "
                                            "one pass of the backbone.")] = None,
    data: Annotated[list[Path] | None, typer.Option(hidden=True, help="DATASET, as older "
                                                    "scripts pass it.")] = None,
    backbone: Annotated[Path | None, typer.Option(help="Weights folder holding the backbone "
                                                  "(default: the shipped weights).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Weights folder to "
                                                "write the backbone and adapters/<task>.* into "
                                                "(default: a new runs/finetune-<task>-<time>/; "
                                                "never the shipped weights).")] = None,
    kind: Annotated[str | None, typer.Option(help="For a user task: binary, multilabel, "
                                             "multiclass or regression.")] = None,
    rank: Annotated[int | None, typer.Option(help="LoRA rank (default: the model "
                                             "config's).")] = None,
    alpha: Annotated[float | None, typer.Option(help="LoRA alpha (default: the model "
                                                "config's).")] = None,
    epochs: Annotated[int, typer.Option(help="Most epochs; early stopping may end sooner.")] = 10,
    patience: Annotated[int, typer.Option(help="Epochs without validation improvement "
                                          "before stopping.")] = 3,
    batch_size: Annotated[int, typer.Option(help="Windows per step.")] = 64,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 3e-3,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed of initialisation and shuffling.")] = 0,
    folds: Annotated[int, typer.Option(min=0, help="beat_class only: also score the head "
                                       "leave-records-out in this many record folds (0: no) "
                                       "and keep the result in its JSON.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint of the run "
                                         "in -o.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Train one task's adapter + head, calibrate it on fold 9 and save it."""
    from ecgmoe_cli.commands.common import console, err_console, split_list
    from ecgmoe_cli.errors import EcgMoeError
    from ecgmoe_cli.io.outputs import new_run_dir
    from ecgmoe_cli.training.finetune import FeatureCache, finetune_adapter
    from ecgmoe_cli.training.loop import FitConfig
    from ecgmoe_cli.weights.meta import BEAT_HEAD

    fit_cfg = FitConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                        patience=patience)
    names = split_list(*(task or []))
    datasets = [*(dataset or []), *(data or [])]
    if not names or not datasets:
        raise EcgMoeError("give the DATASET folder(s) and --task, e.g. `ecgmoe finetune DS "
                          "--task sex`")
    if BEAT_HEAD in names and len(names) > 1:
        raise EcgMoeError(f"--task {BEAT_HEAD} trains on annotated records, not datasets: "
                          "run it on its own")
    if output is None:
        if resume:
            raise EcgMoeError("--resume needs -o: the run folder to continue")
        output = new_run_dir("finetune", names)
        if not as_json:
            err_console.print(f"writing to [bold]{output}[/] (-o to choose)", highlight=False)
    if BEAT_HEAD in names:
        _beat_head(datasets, backbone, output, fit_cfg, folds, device, as_json, quiet)
        return
    cache = FeatureCache()  # the backbone encodes the windows once for every task
    summaries = [finetune_adapter(name, datasets, backbone, output, fit_cfg, kind=kind, rank=rank,
                                  alpha=alpha, device=device, resume=resume,
                                  progress=not (quiet or as_json), cache=cache)
                 for name in names]
    for summary in summaries:  # thresholds calibrated on a handful of windows: say so
        for line in summary["validation"]["warnings"]:
            err_console.print(f"[yellow]warning:[/] calibration on fold 9: {line}",
                              highlight=False, soft_wrap=True)
    if as_json:
        console.print_json(json.dumps(summaries[0] if len(summaries) == 1 else
                                      {"adapters": summaries}))
        return
    for summary in summaries if not quiet else []:
        t = ", ".join(f"{v:.2f}" for v in summary["thresholds"])
        console.print(f"adapter [bold]{summary['task']}[/]: {summary['epochs_run']} epochs "
                      f"(best {summary['best_epoch']}), temperature "
                      f"{summary['temperature']:.2f}, thresholds [{t}] -> {summary['adapter']}")


def _beat_head(data: list[Path], backbone: Path | None, output: Path, fit_cfg: Any,
               folds: int, device: str, as_json: bool, quiet: bool) -> None:
    """`--task beat_class`: the per-beat head on the frozen backbone, into OUT/heads/."""
    from ecgmoe_cli.commands.common import console
    from ecgmoe_cli.model.device import resolve_device
    from ecgmoe_cli.training.beat_class import BeatFit, train_beat_head
    from ecgmoe_cli.weights.meta import default_weights_dir, refuse_shipped_weights

    backbone = default_weights_dir() if backbone is None else backbone
    refuse_shipped_weights(output)
    fit = BeatFit(seed=fit_cfg.seed)  # trees: --epochs, --lr, --batch-size are the adapters'
    summary = train_beat_head(data, backbone, output, fit, folds, resolve_device(device),
                              progress=not (quiet or as_json))
    if as_json:
        console.print_json(json.dumps(summary))
    elif not quiet:
        cv = summary["metrics"].get("leave_records_out")
        scores = "" if cv is None else "; leave-records-out " + ", ".join(
            f"{c} Se {_pct(cv['per_class'][c]['se'])} PPV {_pct(cv['per_class'][c]['ppv'])}"
            for c in ("V", "S"))
        console.print(f"beat head: {summary['beats']} beats of {summary['records']} records in "
                      f"{summary['seconds']} s{scores} -> {summary['head']}")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"
