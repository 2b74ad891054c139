"""Untrusted weights: every tampered file is refused with one clear line; nothing is unpickled.

test_weights.py covers the basic refusals (flipped byte, truncation, a huge header, a rank lie,
another backbone's adapter); here are the files an attacker or a broken copy would hand us.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.model.config import EcgMoeConfig, get_config
from ecgmoe_cli.model.ecgmoe import EcgMoe
from ecgmoe_cli.signal.spec import PreprocessSpec
from ecgmoe_cli.tasks import TASKS
from ecgmoe_cli.weights.store import load_model, save_model
from ecgmoe_cli.weights.tensors import tensors_hash

PACKAGE = Path(__file__).resolve().parents[2] / "ecgmoe_cli"
SPEC = PreprocessSpec()


def _save(directory: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    save_model(EcgMoe(get_config("tiny"), [TASKS["sex"], TASKS["age"]]), SPEC, directory)
    return directory


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(tmp_path_factory.mktemp("w") / "weights")


@pytest.fixture
def weights_dir(clean: Path, tmp_path: Path) -> Path:
    """A fresh copy of the clean weights for one test to damage."""
    out = tmp_path / "weights"
    (out / "adapters").mkdir(parents=True)
    for f in clean.rglob("*"):
        if f.is_file():
            (out / f.relative_to(clean)).write_bytes(f.read_bytes())
    return out


def _refused(directory: Path, match: str) -> str:
    """load_model raises EcgMoeError (one line, no Python internals) matching `match`."""
    with pytest.raises(EcgMoeError, match=match) as info:
        load_model(directory)
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def _edit_json(path: Path, **changes: object) -> None:
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        target = meta
        *parents, leaf = key.split("__")
        for p in parents:
            target = target[p]
        target[leaf] = value
    path.write_text(json.dumps(meta))


def _rewrite_tensors(path: Path, edit, rehash_json: Path | None, hash_key: str) -> None:
    """Apply `edit` to the tensors, save them, and (an attacker's move) fix the JSON hash."""
    tensors = edit(load_file(path))
    save_file(tensors, str(path))
    if rehash_json is not None:
        _edit_json(rehash_json, **{hash_key: tensors_hash(tensors)})


# ---- wrong shapes, extra or missing tensors, even with a matching hash ------------------------

def test_backbone_tensor_with_wrong_shape_and_a_fixed_hash(weights_dir: Path) -> None:
    def grow(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        k = next(k for k in t if t[k].ndim == 2)
        t[k] = torch.zeros(t[k].shape[0] + 1, t[k].shape[1])
        return t

    _rewrite_tensors(weights_dir / "backbone.safetensors", grow, weights_dir / "backbone.json",
                     "backbone_hash")
    _refused(weights_dir, r"backbone\.safetensors: tensor .* has shape")


def test_extra_tensor_injected_with_a_fixed_hash(weights_dir: Path) -> None:
    def inject(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        t["evil.payload"] = torch.zeros(4)
        return t

    _rewrite_tensors(weights_dir / "backbone.safetensors", inject, weights_dir / "backbone.json",
                     "backbone_hash")
    _refused(weights_dir, r"unexpected \['evil.payload'\]")


def test_missing_adapter_tensor_with_a_fixed_hash(weights_dir: Path) -> None:
    def drop(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        t.pop(min(t))
        return t

    _rewrite_tensors(weights_dir / "adapters" / "sex.safetensors", drop,
                     weights_dir / "adapters" / "sex.json", "tensors_hash")
    _refused(weights_dir, r"sex\.safetensors: tensors do not fit the model: missing")


# ---- wrong hashes -----------------------------------------------------------------------------

def test_backbone_changed_without_its_hash(weights_dir: Path) -> None:
    _rewrite_tensors(weights_dir / "backbone.safetensors",
                     lambda t: {k: v + 1 if v.is_floating_point() else v for k, v in t.items()},
                     None, "")
    _refused(weights_dir, r"backbone\.safetensors: tensors do not match the hash")


def test_adapter_changed_without_its_hash(weights_dir: Path) -> None:
    _rewrite_tensors(weights_dir / "adapters" / "age.safetensors",
                     lambda t: {k: v * 2 for k, v in t.items()}, None, "")
    _refused(weights_dir, r"age\.safetensors: tensors do not match the hash")


def test_adapter_of_another_backbone_copied_in_whole(weights_dir: Path, tmp_path: Path) -> None:
    other = _save(tmp_path / "other", seed=1)
    for suffix in (".json", ".safetensors"):
        (weights_dir / "adapters" / f"sex{suffix}").write_bytes(
            (other / "adapters" / f"sex{suffix}").read_bytes())
    _refused(weights_dir, r"sex\.json: adapter was trained on backbone")


# ---- truncated and non-safetensors files ------------------------------------------------------

@pytest.mark.parametrize("keep", [0, 7, 8, 100, -1])
def test_truncated_adapter(weights_dir: Path, keep: int) -> None:
    path = weights_dir / "adapters" / "sex.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: keep if keep >= 0 else len(data) - 1])
    _refused(weights_dir, r"sex\.safetensors: not a valid safetensors file")


def test_header_whose_offsets_point_past_the_end(weights_dir: Path) -> None:
    path = weights_dir / "backbone.safetensors"
    header = json.dumps({"x": {"dtype": "F32", "shape": [1 << 40],
                               "data_offsets": [0, 4 << 40]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    _refused(weights_dir, r"backbone\.safetensors: not a valid safetensors file")


class _Trap:
    """Unpickling this creates the marker file: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_a_pickle_in_place_of_safetensors_is_never_executed(weights_dir: Path,
                                                            tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"state_dict": _Trap(marker)})
    (weights_dir / "backbone.safetensors").write_bytes(payload)
    (weights_dir / "adapters" / "sex.safetensors").write_bytes(payload)
    _refused(weights_dir, r"not a valid safetensors file")
    assert not marker.exists()


def test_torch_save_file_in_place_of_safetensors(weights_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"w": torch.zeros(2), "trap": _Trap(marker)}, weights_dir / "backbone.safetensors")
    _refused(weights_dir, r"backbone\.safetensors: not a valid safetensors file")
    assert not marker.exists()


# ---- JSON sidecars that lie -------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null", "\xff\xfe garbage"])
def test_backbone_json_that_is_not_a_sidecar(weights_dir: Path, text: str) -> None:
    (weights_dir / "backbone.json").write_bytes(text.encode("latin1"))
    _refused(weights_dir, r"backbone\.json: not (a valid JSON sidecar|an ecgmoe backbone)")


@pytest.mark.parametrize(("change", "match"), [
    ({"format": "something-else"}, "not an ecgmoe backbone"),
    ({"config__d_model": 64}, "backbone.safetensors: tensor .* has shape"),
    ({"config__d_model": "wide"}, "backbone.json"),
    ({"config__n_heads": 0}, r"backbone\.json: invalid model config"),
    ({"config__rogue_field": 1}, r"backbone\.json: model config has unknown fields"),
    ({"spec__fs": 1e9}, r"backbone\.json: invalid preprocessing spec"),
    ({"spec__fs": "fast"}, "backbone.json"),
    ({"spec__exec": "import os"}, r"backbone\.json: preprocessing spec has unknown fields"),
    ({"backbone_hash": 0}, r"backbone\.safetensors: tensors do not match the hash"),
])
def test_backbone_json_lies(weights_dir: Path, change: dict[str, object], match: str) -> None:
    _edit_json(weights_dir / "backbone.json", **change)
    _refused(weights_dir, match)


@pytest.mark.parametrize(("change", "match"), [
    ({"task__name": "age"}, r"sex\.json: sidecar describes task 'age'"),
    ({"task__kind": "regression"}, r"sex\.json: task 'sex'"),
    ({"task__kind": "telepathy"}, r"sex\.json"),
    ({"rank": 6}, r"sex\.safetensors: tensor .* has shape"),
    ({"rank": "four"}, r"sex\.json: adapter sidecar lacks or mangles"),
    ({"tensors_hash": "0" * 64}, r"sex\.safetensors: tensors do not match the hash"),
    ({"temperature": -1.0}, r"sex\.json: .*bad calibration"),
    ({"temperature": "hot"}, r"sex\.json"),
    ({"thresholds": [0.5, 0.5, 0.5]}, r"sex\.json: .*bad calibration"),
    ({"thresholds": 0.5}, r"sex\.json"),
    ({"evidence": {"label": "female"}}, r"sex\.json: .*bad rhythm evidence"),
    ({"evidence": "yes"}, r"sex\.json: .*evidence must name"),
])
def test_adapter_json_lies(weights_dir: Path, change: dict[str, object], match: str) -> None:
    _edit_json(weights_dir / "adapters" / "sex.json", **change)
    _refused(weights_dir, match)
    model, _, _ = load_model(weights_dir, tasks=["age"])  # the other adapter still loads
    assert list(model.tasks) == ["age"]


_HUGE = """
import json, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_DATA, (3 << 30, 3 << 30))  # a lie may not eat the machine
from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.weights.store import load_model
try:
    load_model(Path(sys.argv[1]))
except EcgMoeError as e:
    print("REFUSED", e)
"""


@pytest.mark.parametrize("change", [{"config__expert_hidden": 10**8}, {"config__d_model": 10**6}])
def test_backbone_json_claiming_a_huge_model_is_refused_before_allocating(
        weights_dir: Path, change: dict[str, object]) -> None:
    """Building the model a JSON describes must not come first: the tensors' shapes bound it."""
    _edit_json(weights_dir / "backbone.json", **change)
    r = subprocess.run([sys.executable, "-c", _HUGE, str(weights_dir)], capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0 and r.stdout.startswith("REFUSED"), (r.stdout + r.stderr)[-600:]
    assert "backbone" in r.stdout and r.stdout.count("\n") == 1


def test_adapter_json_claiming_a_huge_rank_is_refused_before_allocating(weights_dir: Path) -> None:
    _edit_json(weights_dir / "adapters" / "sex.json", rank=10**9)
    r = subprocess.run([sys.executable, "-c", _HUGE, str(weights_dir)], capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0 and r.stdout.startswith("REFUSED"), (r.stdout + r.stderr)[-600:]
    assert "sex" in r.stdout


# ---- issue 24 R15: sidecar values range-checked at load ---------------------------------------

@pytest.mark.parametrize(("change", "match"), [
    ({"spec__window_s": 1e12}, r"backbone\.json: invalid preprocessing spec: window_s must be"),
    ({"spec__clip_mv": float("nan")}, r"backbone\.json: .*clip_mv has the wrong type or is not "
                                      "finite"),
    ({"spec__leads": ["I"] * 12}, r"backbone\.json: .*leads must be distinct"),
    ({"spec__max_beats": 10**9}, r"backbone\.json: .*max_beats must be in"),
    ({"spec__filter_order": True}, r"backbone\.json: .*filter_order has the wrong type"),
])
def test_spec_values_out_of_range_are_refused_naming_the_file(
        weights_dir: Path, change: dict, match: str) -> None:
    _edit_json(weights_dir / "backbone.json", **change)
    _refused(weights_dir, match)


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), -1.0, 0.0])
def test_adapter_alpha_must_be_finite_and_positive(weights_dir: Path, alpha: float) -> None:
    _edit_json(weights_dir / "adapters" / "sex.json", alpha=alpha)
    _refused(weights_dir, r"sex\.json: alpha must be a finite number > 0")


def test_a_deeply_nested_sidecar_is_one_line(weights_dir: Path, tmp_path: Path) -> None:
    from broken_inputs import _wfdb, ecg_like
    from run_cli import invoke, one_line_error

    from ecgmoe_cli.signal.leads import CANONICAL_LEADS

    (weights_dir / "backbone.json").write_text("[" * 200_000 + "]" * 200_000)
    _refused(weights_dir, r"backbone\.json: not a valid JSON sidecar \(nested too deeply\)")
    (tmp_path / "in").mkdir()
    _wfdb(tmp_path / "in", "rec", ecg_like(250, 10, n_leads=12), 250, list(CANONICAL_LEADS))
    code, _, err = invoke("predict", tmp_path / "in", "-o", tmp_path / "r.parquet", "--weights",
                          weights_dir, "--workers", 1, "-q")
    one_line_error(code, err, "backbone.json: not a valid JSON sidecar (nested too deeply)")


# ---- through the CLI: one red line, exit 1 ----------------------------------------------------

def test_cli_refuses_tampered_weights_with_one_line(weights_dir: Path, tmp_path: Path) -> None:
    from fakes import TINY_SPEC, make_fake_dataset

    torch.manual_seed(0)
    model = EcgMoe(EcgMoeConfig.from_spec("tiny", TINY_SPEC), [TASKS["sex"]])
    save_model(model, TINY_SPEC, weights_dir)
    data = weights_dir / "backbone.safetensors"
    data.write_bytes(data.read_bytes()[:-3])
    ds = make_fake_dataset(tmp_path / "ds", n_records=8)
    env = {**os.environ, "COLUMNS": "300"}
    r = subprocess.run([sys.executable, "-m", "ecgmoe_cli", "evaluate", str(ds), "--weights",
                        str(weights_dir), "--fold", "all"], capture_output=True, text=True,
                       timeout=120, env=env, check=False)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stderr.startswith("error:") and "backbone.safetensors" in r.stderr


# ---- the source: nothing unpickles -------------------------------------------------------------

_PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            out.append((ast.unparse(node.func), node))
    return out


def _kw(call: ast.Call, name: str) -> object:
    for k in call.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else "<not a constant>"
    return None


def test_package_source_never_unpickles() -> None:
    problems = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    for f in files:
        tree = ast.parse(f.read_text(), str(f))
        where = f.relative_to(PACKAGE.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
                if node.module == "torch" and any(a.name == "load" for a in node.names):
                    problems.append(f"{where}:{node.lineno} imports torch.load by name")
            else:
                continue
            problems += [f"{where}:{node.lineno} imports {n}" for n in names if n in _PICKLERS]
        for func, call in _calls(tree):
            line = f"{where}:{call.lineno} {func}"
            if func.endswith("torch.load") and _kw(call, "weights_only") is not True:
                problems.append(f"{line} without weights_only=True")
            if func in ("torch.jit.load", "pd.read_pickle", "pandas.read_pickle"):
                problems.append(f"{line} unpickles")
            pickles = _kw(call, "allow_pickle") not in (None, False)
            if func.endswith(("np.load", "numpy.load")) and pickles:
                problems.append(f"{line} with allow_pickle")
    assert not problems, "\n".join(problems)
