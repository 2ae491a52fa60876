"""Fusion plans: ``--save-plan`` writes which ops each kernel holds (and its schedule); ``--plan`` compiles with an
edited one, pinning, splitting or merging kernels without touching the compiler."""

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

import fusecc
from fusecc.driver import Options, save_plan


@pytest.fixture(scope="module")
def plan(block, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("plan") / "plan.json")
    save_plan(block, Options(cache=False), path)
    with open(path) as handle:
        return json.load(handle)


def _x():
    return {"x": np.random.default_rng(0).standard_normal((1, 16, 14, 14)).astype(np.float32)}


def _write(tmp_path, plan, name="edited.json"):
    path = tmp_path / name
    path.write_text(json.dumps(plan))
    return str(path)


def _check_against_ort(block, model):
    expected = ort.InferenceSession(block, providers=["CPUExecutionProvider"]).run(None, _x())[0]
    np.testing.assert_allclose(model.run(_x())[0], expected, rtol=1e-4, atol=1e-4)


def test_the_saved_plan_names_each_kernel_s_ops_and_schedule(plan):
    assert plan["fusecc_plan"] == 1
    assert [(r["kernel"], r["ops"]) for r in plan["regions"]] == [
        ("fused_pad_0", ["tensor.pad@conv1+bn1"]),
        ("fused_conv_relu_pad_1", ["tensor.conv@conv1+bn1", "tensor.relu@relu1", "tensor.pad@conv2+bn2"]),
        ("fused_conv_add_relu_2", ["tensor.conv@conv2+bn2", "tensor.add@residual", "tensor.relu@relu2"])]
    assert "micro_tile" in plan["regions"][2]["schedule"] and plan["regions"][0]["schedule"] == {}


def test_the_plan_as_saved_compiles_to_the_same_kernels_and_bits(block, plan, tmp_path):
    planned = fusecc.compile(block, plan=_write(tmp_path, plan), cache=False)
    fused = fusecc.compile(block, cache=False)
    assert [(k.name, k.nodes) for k in planned.kernels] == [(k.name, k.nodes) for k in fused.kernels]
    assert planned.run(_x())[0].tobytes() == fused.run(_x())[0].tobytes()


def test_a_kernel_split_in_two(block, plan, tmp_path):
    regions = plan["regions"][:2] + [{"ops": ["tensor.conv@conv2+bn2"]},
                                     {"ops": ["tensor.add@residual", "tensor.relu@relu2"]}]
    model = fusecc.compile(block, plan=_write(tmp_path, {**plan, "regions": regions}), cache=False)
    assert [k.nodes for k in model.kernels][2:] == [("conv2", "bn2"), ("residual", "relu2")]
    _check_against_ort(block, model)


def test_two_kernels_merged_and_ops_left_out_get_kernels_of_their_own(block, plan, tmp_path):
    merged = {"ops": plan["regions"][0]["ops"] + plan["regions"][1]["ops"]}
    model = fusecc.compile(block, plan=_write(tmp_path, {**plan, "regions": [merged]}), cache=False)
    assert [k.name for k in model.kernels] == ["fused_pad_conv_relu_0", "fused_conv_1", "fused_add_2",
                                               "fused_relu_3"]
    _check_against_ort(block, model)


def test_an_edited_schedule_is_the_one_the_kernel_follows(block, plan, tmp_path):
    regions = [dict(r) for r in plan["regions"]]
    regions[2] = {**regions[2], "schedule": {"micro_tile": [2, 1]}}
    path = _write(tmp_path, {**plan, "regions": regions})
    loops = subprocess.run([sys.executable, "-m", "fusecc.cli", block, "--plan", path, "--emit=ir", "--elide-weights"],
                           capture_output=True, text=True, check=True).stdout
    assert "func @fused_conv_add_relu_2(" in loops
    assert "micro_tile = [2, 1]" in loops.split("func @fused_conv_add_relu_2(")[1].split("\n")[0]
    _check_against_ort(block, fusecc.compile(block, plan=path, cache=False))


@pytest.mark.parametrize("regions, message", [
    ([{"kernel": "k", "ops": ["tensor.conv@nosuch"]}], "region k: the graph has no op tensor.conv@nosuch"),
    ([{"kernel": "a", "ops": ["tensor.relu@relu1"]}, {"kernel": "b", "ops": ["tensor.relu@relu1"]}],
     "region b: op tensor.relu@relu1 is already in region a"),
    ([{"kernel": "k", "ops": ["tensor.conv@conv1+bn1", "tensor.add@residual"]}],
     "region k: op tensor.add@residual reads tensor.conv@conv2\\+bn2, which itself depends on the region"),
    ([{"kernel": "k", "ops": []}], "region #0 needs a non-empty list 'ops'"),
], ids=["unknown-op", "op-twice", "not-convex", "empty"])
def test_a_plan_that_does_not_fit_the_graph_names_the_region_and_the_op(block, tmp_path, regions, message):
    with pytest.raises(ValueError, match=message):
        fusecc.compile(block, plan=_write(tmp_path, {"fusecc_plan": 1, "regions": regions}), cache=False)


def test_files_that_are_no_plan_are_refused(block, tmp_path):
    with pytest.raises(ValueError, match="is not a fusion plan of version 1"):
        fusecc.compile(block, plan=_write(tmp_path, {"regions": []}), cache=False)
    with pytest.raises(ValueError, match="cannot read the fusion plan"):
        fusecc.compile(block, plan=str(tmp_path / "missing.json"), cache=False)


def test_the_command_saves_and_uses_plans_and_a_planned_compile_skips_the_cache(block, tmp_path, compile_cache):
    path = tmp_path / "p.json"
    saved = subprocess.run([sys.executable, "-m", "fusecc.cli", block, "--save-plan", path], capture_output=True,
                           text=True)
    assert saved.returncode == 0 and saved.stderr == f"wrote {path} (3 kernels)\n"
    assert not fusecc.compile(block, plan=str(path)).cache_hit and not fusecc.compile(block, plan=str(path)).cache_hit
