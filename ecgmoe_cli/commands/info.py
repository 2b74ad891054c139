"""`ecgmoe info`: parameters, FLOPs per record, active vs total experts and adapter sizes."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ecgmoe_cli.commands.common import console


def run(
    config: Annotated[str, typer.Option("--config", "-c", help="Model config name (tiny, base).")]
    = "base",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Print a model config's parameters, FLOPs and active experts, with all ten task adapters."""
    import torch
    from rich.table import Table

    from ecgmoe_cli.model.config import get_config
    from ecgmoe_cli.model.ecgmoe import EcgMoe
    from ecgmoe_cli.model.summary import model_summary
    from ecgmoe_cli.tasks import TASKS

    torch.manual_seed(0)
    s = model_summary(EcgMoe(get_config(config), list(TASKS.values())))
    if as_json:
        console.print_json(json.dumps(s))
        return
    p, e = s["parameters"], s["experts"]
    t = Table(title=f"ECG-MoE [bold]{s['config']}[/]: parameters")
    t.add_column("part")
    t.add_column("parameters", justify="right")
    for part, n in p["parts"].items():
        t.add_row(part, f"{n:,}")
    t.add_row("[bold]total[/]", f"[bold]{p['total']:,}[/]")
    console.print(t)
    console.print(f"FLOPs per record ({s['flops_measured_at_beats']} beats, all tasks): "
                  f"{s['flops_per_record'] / 1e6:,.1f} M (backbone "
                  f"{s['flops_backbone_per_record'] / 1e6:,.1f} M)")
    console.print(f"experts: {e['layers']} MoE layers x {e['n_experts']} experts, top-{e['top_k']}"
                  f": {e['active_expert_parameters_per_token']:,} of "
                  f"{e['total_expert_parameters']:,} expert parameters active per token")
    a = Table(title="task adapters (LoRA + head)")
    for col in ("task", "rank", "alpha", "parameters", "KB (fp32)", "% of backbone"):
        a.add_column(col, justify="left" if col == "task" else "right")
    for task, v in s["adapters"].items():
        a.add_row(task, str(v["rank"]), f"{v['alpha']:g}", f"{v['parameters']:,}",
                  f"{v['bytes'] / 1024:,.1f}", f"{100 * v['parameters'] / p['backbone']:.2f}")
    console.print(a)
