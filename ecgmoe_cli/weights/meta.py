"""What a weights directory says about itself, read without torch: the shipped location, the
backbone's JSON sidecar (its PreprocessSpec) and the tasks of its adapters.

`predict` reads this first, so its reader processes start (and are forked without torch)
while the model loads; `weights.store.load_model` checks everything again when it loads tensors.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.signal.beat_features import BEAT_FEATURES
from ecgmoe_cli.signal.spec import PreprocessSpec
from ecgmoe_cli.tasks import Task, task_from_dict

T = TypeVar("T")

BACKBONE = "backbone"
ADAPTERS = "adapters"
HEADS = "heads"  # heads on the backbone's beat tokens, beside the adapters
BEAT_HEAD = "beat_class"


def read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise EcgMoeError("file not found", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EcgMoeError(f"not a valid JSON sidecar ({e})", path) from None
    except RecursionError:  # a list nested 100,000 deep: no sidecar is shaped like that
        raise EcgMoeError("not a valid JSON sidecar (nested too deeply)", path) from None
    if not isinstance(obj, dict):
        raise EcgMoeError("not a valid JSON sidecar (not an object)", path)
    return obj


def default_weights_dir() -> Path:
    """The shipped weights/: package data `ecgmoe_weights` of a wheel (an editable install maps it
    to the clone's weights/), else the clone's weights/ beside the package; a clear error if none.
    """
    spec = importlib.util.find_spec("ecgmoe_weights")
    found = (spec.submodule_search_locations or []) if spec else []
    candidates = [Path(p) for p in found if Path(p).is_dir()]  # skips import-hook placeholders
    candidates.append(Path(__file__).resolve().parents[2] / "weights")
    for path in candidates:
        if (path / f"{BACKBONE}.json").is_file():
            return path
    raise EcgMoeError("no shipped weights in this install (looked in "
                      f"{', '.join(dict.fromkeys(map(str, candidates)))}); pass --weights DIR, "
                      "or build them with `make weights`")


def refuse_shipped_weights(out: Path) -> None:
    """The shipped weights are read, never written (a fine-tune on a few windows once replaced
    an adapter there without a word)."""
    try:
        shipped = default_weights_dir().resolve()
    except EcgMoeError:  # none in this install: nothing to protect
        return
    target = Path(out).resolve()
    if target == shipped or shipped in target.parents:
        raise EcgMoeError("that is the shipped weights folder, which is never written; choose "
                          "another -o", out)


def read_backbone_meta(directory: Path) -> dict[str, Any]:
    meta = read_json(Path(directory) / f"{BACKBONE}.json")
    if meta.get("format") != "ecgmoe-backbone" or "backbone_hash" not in meta:
        raise EcgMoeError("not an ecgmoe backbone sidecar", Path(directory) / f"{BACKBONE}.json")
    return meta


def parse_sidecar(parse: Callable[[], T], path: Path, what: str) -> T:
    """parse() of a JSON sidecar's fields; a missing or mangled one is a one-line EcgMoeError
    naming the file (a lying JSON must never surface as a traceback)."""
    try:
        return parse()
    except (KeyError, TypeError, ValueError) as e:
        raise EcgMoeError(f"{what} sidecar lacks or mangles {e}", path) from None
    except EcgMoeError as e:
        raise EcgMoeError(str(e), path) from None


def adapter_task(ameta: dict[str, Any], name: str, path: Path) -> Task:
    """The task an adapter sidecar describes, which must be the one its file is named for."""
    task = parse_sidecar(lambda: task_from_dict(ameta["task"]), path, "adapter")
    if task.name != name:
        raise EcgMoeError(f"sidecar describes task {task.name!r}, not {name!r}", path)
    return task


def read_plan(directory: Path, tasks: Sequence[str] | None = None,
              meta: dict[str, Any] | None = None) -> tuple[PreprocessSpec, list[Task]]:
    """The spec the backbone was trained with and the adapters' tasks (all, or `tasks`);
    `meta`: backbone.json when the caller has read it already."""
    directory = Path(directory)
    meta = meta if meta is not None else read_backbone_meta(directory)
    spec = parse_sidecar(lambda: PreprocessSpec.from_dict(meta["spec"]),
                         directory / f"{BACKBONE}.json", "backbone")
    available = sorted(p.stem for p in (directory / ADAPTERS).glob("*.json"))
    wanted = available if tasks is None else list(tasks)
    absent = [t for t in wanted if t not in available]
    if absent:
        raise EcgMoeError(f"no adapter for tasks {absent}; present: {available}",
                          directory / ADAPTERS)
    paths = [directory / ADAPTERS / f"{name}.json" for name in wanted]
    return spec, [adapter_task(read_json(p), name, p) for name, p in zip(wanted, paths)]


def beat_head_problem(directory: Path, backbone_hash: str) -> str | None:
    """Why the weights' beat head cannot serve this backbone (one line), or None when it can;
    read from the JSON alone, so predict can say so before any tensor loads."""
    json_path = Path(directory) / HEADS / f"{BEAT_HEAD}.json"
    if not json_path.is_file():
        return (f"{json_path} not found: these weights have no beat head (train one with "
                f"`ecgmoe finetune --task {BEAT_HEAD}`)")
    meta = read_json(json_path)
    trained_on = str(meta.get("backbone_hash"))
    if trained_on != backbone_hash:
        return (f"{json_path}: the beat head was trained on backbone {trained_on[:12]}, not on "
                f"this one ({backbone_hash[:12]}); retrain it with `ecgmoe finetune --task "
                f"{BEAT_HEAD}`")
    if list(meta.get("features", [])) != list(BEAT_FEATURES):
        return (f"{json_path}: the beat head was trained on other beat features than this "
                f"version computes; retrain it with `ecgmoe finetune --task {BEAT_HEAD}`")
    return None
