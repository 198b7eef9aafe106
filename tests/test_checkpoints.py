"""odecheck analyze on checkpoints as people publish them: safetensors (single, sharded, bf16),
wrapped and prefixed state_dicts, names found in the wild, stages whose shape changes, and the
chunked statistics equal to the in-memory estimator. Every checkpoint is built here."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from odecheck._errors import InvalidArgument
from odecheck.checkpoints import analyze_checkpoint, group_paths, list_tensors, path_statistics
from odecheck.estimators import path_stats
from odecheck.init import fbm_paths, gp_paths, member_generator
from typer.testing import CliRunner

from odecheck.cli import app

st_numpy = pytest.importorskip("safetensors.numpy")
st_torch = pytest.importorskip("safetensors.torch")

L, SHAPE = 256, (16, 12)  # 5 dyadic lags: the least depth at which `sde` can be told from smooth + noise
P = SHAPE[0] * SHAPE[1]
NAMES = {  # naming conventions of published models -> the planted regularity along depth
    "model.layers.{k}.self_attn.q_proj.weight": "smooth",
    "transformer.h.{k}.mlp.c_fc.weight": "brownian",
    "encoder.layer.{k}.attention.output.dense.weight": "white",
    "residual_layers.{k}.conv1.weight": "smooth",
}
EXPECTED = {"smooth": "ode", "brownian": "sde", "white": "none"}


class Payload:  # an arbitrary pickled object: weights_only=True refuses to build it
    pass


def planted(kind: str, seed: int) -> np.ndarray:
    g = member_generator(seed, 0)
    if kind == "smooth":
        # length scale 0.3 against the largest lag max(4, L // 16) / L = 1/8: the path is smooth at every
        # lag the Hurst estimator looks at (at 0.2 and L = 24 the top lag 1/6 is near l, and it is not)
        Z = gp_paths(P, L, 0.3, g).T.numpy()
    elif kind == "brownian":
        Z = fbm_paths(P, L, 0.5, g).T.numpy()
    else:
        Z = torch.randn(L, P, generator=g, dtype=torch.float64).numpy()
    return np.ascontiguousarray(Z.reshape(L, *SHAPE), dtype=np.float32)  # safetensors writes the raw buffer


def state(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    tensors, paths = {}, {}
    for i, (pattern, kind) in enumerate(NAMES.items()):
        Z = planted(kind, seed + i)
        paths[pattern.replace("{k}", "*")] = Z
        for k in range(L):
            tensors[pattern.format(k=k)] = Z[k]
    tensors["lm_head.weight"] = np.ones((4, 4), np.float32)  # no layer index: not a path
    return tensors, paths


def check_rows(rows, paths):
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == set(paths)
    for name, Z in paths.items():
        r, ref = by_name[name], path_stats(Z.astype(np.float64))
        assert r["regime"] == EXPECTED[NAMES[name.replace("*", "{k}")]], (name, r["regime"])
        assert r["hurst"] == pytest.approx(ref.hurst, abs=1e-9)
        assert r["hurst_ci"] == pytest.approx(list(ref.hurst_ci), abs=1e-9)
        for stat in ("max_increment", "quadratic_variation", "max_norm", "root_sum_squares", "max_normalized_increment"):
            assert r[stat] == pytest.approx(getattr(ref, stat), rel=1e-9), (name, stat)
        assert r["depth"] == L and r["shape"] == list(SHAPE)


def test_single_safetensors_file_and_least_regular_first(tmp_path):
    tensors, paths = state()
    st_numpy.save_file(tensors, tmp_path / "model.safetensors")
    res = analyze_checkpoint(tmp_path / "model.safetensors")
    check_rows(res["paths"], paths)
    order = [r["regime"] for r in res["paths"]]
    assert order == sorted(order, key=["none", "sde", "inconclusive", "ode"].index)
    assert res["tensors"] == len(tensors)


def test_sharded_safetensors_by_folder_and_by_index(tmp_path):
    tensors, paths = state(seed=10)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for shard, keys in shards.items():
        st_numpy.save_file({k: tensors[k] for k in keys}, tmp_path / shard)
        weight_map.update({k: shard for k in keys})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for target in (tmp_path, tmp_path / "model.safetensors.index.json"):
        check_rows(analyze_checkpoint(target)["paths"], paths)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(InvalidArgument, match="shard 'model-00002-of-00002.safetensors' is missing"):
        analyze_checkpoint(tmp_path)


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "sub/../../outside.safetensors"])
def test_a_shard_index_never_leads_out_of_its_folder(tmp_path, shard):
    # a hostile index.json naming a file outside the checkpoint's folder: refused before anything is read
    st_numpy.save_file({"layers.0.w": np.ones((2, 2), np.float32)}, tmp_path / "outside.safetensors")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"layers.0.w": shard}}))
    with pytest.raises(InvalidArgument, match="is not a file in the index's folder"):
        analyze_checkpoint(model)
    (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"layers.0.w": 3}}))
    with pytest.raises(InvalidArgument, match="weight_map is not names -> shard files"):
        analyze_checkpoint(model)


def _fp8_layers(rng, L, rows, cols, grid, f8, dtype):
    """L FP8 layers (rows, cols) with random float32 scale grids of shape ``grid``: the tensors as raw
    safetensors entries, and the weights and scales as float64 arrays."""
    t, ws, scales = {}, [], []
    for k in range(L):
        w = torch.tensor(rng.standard_normal((rows, cols)), dtype=torch.float32).to(f8)
        scale = rng.uniform(0.5, 2.0, grid).astype(np.float32)
        t[f"layers.{k}.mlp.weight"] = (dtype, (rows, cols), w.view(torch.uint8).numpy().tobytes())
        t[f"layers.{k}.mlp.weight_scale_inv"] = ("F32", grid, scale.tobytes())
        ws.append(w.double().numpy())
        scales.append(scale.astype(np.float64))
    return t, ws, scales


def _dequantized_by_loop(w, scale, br, bc):
    """The reference: every entry multiplied by its block's factor, one entry at a time."""
    out = np.empty_like(w)
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            out[i, j] = w[i, j] * scale[i // br, j // bc]
    return out


def _read_path(file):
    (path,), skipped = group_paths(list_tensors(file))
    return path, skipped, np.stack([x.flat(0, x.size).reshape(x.shape) for x in path.layers])


@pytest.mark.parametrize("dtype,torch_dtype", [("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2")])
def test_fp8_weights_are_read_with_their_block_scales(tmp_path, dtype, torch_dtype):
    # an FP8 checkpoint as DeepSeek-V3 publishes one: w (rows, cols) in FP8 and w_scale_inv, one float32
    # factor per block; here blocks of 4 x 3 declared in the header's metadata (2 x 3 of them)
    L, rows, cols = 8, 8, 9
    t, ws, scales = _fp8_layers(np.random.default_rng(5), L, rows, cols, (2, 3), getattr(torch, torch_dtype), dtype)
    ref = [w * np.kron(sc, np.ones((4, 3))) for w, sc in zip(ws, scales, strict=True)]
    _raw_safetensors(tmp_path / "fp8.safetensors", t, metadata={"weight_block_size": "[4, 3]"})
    path, skipped, Z = _read_path(tmp_path / "fp8.safetensors")
    np.testing.assert_array_equal(Z, np.stack(ref))
    assert all("the dequantization scale of" in s["reason"] for s in skipped) and len(skipped) == L
    # chunks that cut rows and blocks read the same entries
    x = path.layers[3]
    np.testing.assert_array_equal(np.concatenate([x.flat(0, 17), x.flat(17, 50), x.flat(50, 72)]), ref[3].ravel())
    rows_ = analyze_checkpoint(tmp_path / "fp8.safetensors", chunk=5)["paths"]
    assert rows_[0]["max_increment"] == pytest.approx(max(np.linalg.norm(ref[k + 1] - ref[k]) for k in range(L - 1)))


@pytest.mark.parametrize("where", ["default", "config.json", "metadata"])
def test_fp8_blocks_that_do_not_divide_the_shape(tmp_path, where):
    # 300 x 200 in blocks of 128 x 128 (the format's default): 3 x 2 factors, the last blocks partial (44 rows,
    # 72 columns). Inferring the block from the grid (ceil(300 / 3) = 100 rows) scales rows 100-127 and
    # 228-255 by the wrong factor; the reference below knows only the block size. The same with blocks of
    # 96 x 64 given by the checkpoint's config.json or its header (4 x 4 factors).
    br, bc = (128, 128) if where == "default" else (96, 64)
    rows, cols = 300, 200
    grid = (-(-rows // br), -(-cols // bc))
    t, ws, scales = _fp8_layers(np.random.default_rng(11), 3, rows, cols, grid, torch.float8_e4m3fn, "F8_E4M3")
    meta = {"weight_block_size": json.dumps([br, bc])} if where == "metadata" else None
    _raw_safetensors(tmp_path / "model.safetensors", t, metadata=meta)
    if where == "config.json":
        (tmp_path / "config.json").write_text(json.dumps(
            {"quantization_config": {"quant_method": "fp8", "weight_block_size": [br, bc]}}))
    _, _, Z = _read_path(tmp_path / "model.safetensors")
    for k in range(3):
        np.testing.assert_array_equal(Z[k], _dequantized_by_loop(ws[k], scales[k], br, bc))


def test_fp8_scale_grid_inconsistent_with_shape_and_block_is_refused_by_name(tmp_path):
    # 300 x 200 with 5 x 2 factors: blocks of 128 rows need 3; the tensor is left out, named, with the reason
    t, _, _ = _fp8_layers(np.random.default_rng(2), 3, 300, 200, (5, 2), torch.float8_e4m3fn, "F8_E4M3")
    _raw_safetensors(tmp_path / "model.safetensors", t)
    refs = {r.name: r for r in list_tensors(tmp_path / "model.safetensors")}
    why = refs["layers.0.mlp.weight"].reason
    assert "'layers.0.mlp.weight_scale_inv' of shape [5, 2] does not match the shape [300, 200]" in why
    assert "blocks of 128 x 128 (default 128 x 128): expected [3, 2]" in why
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": {"weight_block_size": [0, 128]}}))
    with pytest.raises(InvalidArgument, match=r"config.json: weight_block_size \[0, 128\] is not two positive"):
        list_tensors(tmp_path / "model.safetensors")


def test_gguf_files_dequantized_row_block_by_row_block(tmp_path):
    # llama.cpp names (blk.N.attn_q.weight), float32 and Q8_0 tensors, written here with the gguf package
    gguf = pytest.importorskip("gguf")
    L = 6
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    ref_q, ref_f = [], []
    for k in range(L):
        a = rng.standard_normal((4, 64)).astype(np.float32)
        q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor(f"blk.{k}.ffn_up.weight", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        ref_q.append(gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0).astype(np.float64))
        f = rng.standard_normal((3, 5)).astype(np.float32)
        w.add_tensor(f"blk.{k}.attn_q.weight", f)
        ref_f.append(f.astype(np.float64))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    paths, _ = group_paths(list_tensors(tmp_path / "m.gguf"))
    by = {p.name: p for p in paths}
    up = by["blk.*.ffn_up.weight"]
    assert up.shape == (4, 64) and up.layers[0].dtype == "Q8_0"
    np.testing.assert_array_equal(np.concatenate([up.layers[2].flat(0, 70), up.layers[2].flat(70, 256)]), ref_q[2].ravel())
    q_rows = {r["name"]: r for r in analyze_checkpoint(tmp_path / "m.gguf", chunk=37)["paths"]}
    assert q_rows["blk.*.attn_q.weight"]["max_norm"] == pytest.approx(max(np.linalg.norm(f) for f in ref_f))
    assert q_rows["blk.*.ffn_up.weight"]["max_increment"] == pytest.approx(
        max(np.linalg.norm(ref_q[k + 1] - ref_q[k]) for k in range(L - 1)))
    (tmp_path / "renamed").write_bytes((tmp_path / "m.gguf").read_bytes())  # by content, whatever the name
    assert len(group_paths(list_tensors(tmp_path / "renamed"))[0]) == 2


def test_onnx_initializers_are_the_weights(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    L = 5
    rng = np.random.default_rng(8)
    ws = [rng.standard_normal((4, 4)).astype(np.float32) for _ in range(L)]
    inits = [numpy_helper.from_array(w, name=f"layers.{k}.linear.weight") for k, w in enumerate(ws)]
    inits.append(numpy_helper.from_array(np.arange(3, dtype=np.int64), name="layers.0.shape_const"))
    node = helper.make_node("MatMul", ["x", "layers.0.linear.weight"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=inits)
    onnx.save(helper.make_model(graph), str(tmp_path / "m.onnx"))
    res = analyze_checkpoint(tmp_path / "m.onnx")
    (row,) = res["paths"]
    assert row["name"] == "layers.*.linear.weight" and row["max_norm"] == pytest.approx(max(np.linalg.norm(w) for w in ws))
    assert any(s["name"] == "layers.0.shape_const" and "int64" in s["reason"] for s in res["skipped"])


def test_which_weights_feed_a_normalization_by_their_neighbours_names():
    from odecheck.checkpoints import feeds_normalization as feeds

    resnet = [f"module.layer1.{k}.{m}" for k in range(3) for m in (
        "conv1.weight", "bn1.weight", "bn1.running_var", "conv2.weight", "bn2.weight", "downsample.0.weight",
        "downsample.1.weight", "downsample.1.running_var")]
    assert feeds("layer1.*.conv1.weight", resnet) and feeds("layer1.*.conv2.weight", resnet)
    assert feeds("layer1.*.downsample.0.weight", resnet) and not feeds("layer1.*.bn1.weight", resnet)
    llama = [f"model.layers.{k}.{m}" for k in range(3) for m in (  # pre-norm: the norm comes before
        "self_attn.q_proj.weight", "mlp.up_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight")]
    assert not feeds("model.layers.*.self_attn.q_proj.weight", llama) and not feeds("model.layers.*.mlp.up_proj.weight", llama)
    bert = [f"encoder.layer.{k}.{m}" for k in range(3) for m in (  # post-norm: dense, then LayerNorm
        "attention.output.dense.weight", "attention.output.LayerNorm.weight", "attention.self.query.weight",
        "intermediate.dense.weight")]
    assert feeds("encoder.layer.*.attention.output.dense.weight", bert)
    assert not feeds("encoder.layer.*.attention.self.query.weight", bert)
    assert not feeds("encoder.layer.*.intermediate.dense.weight", bert)
    gpt2 = [f"transformer.h.{k}.{m}" for k in range(3) for m in ("ln_1.weight", "attn.c_attn.weight", "ln_2.weight")]
    assert not feeds("transformer.h.*.attn.c_attn.weight", gpt2)
    assert feeds("layer1.*.conv1.weight[1:3]", resnet)  # a split stage's run
    # each rule at its edge: one case per way it could be read wrong
    assert not feeds("encoder.weight", ["encoder.weight", "encoder_norm.weight"])  # no layer index: no path
    assert not feeds("layers.*.conv1.weight", ["other.0.x.weight", "other.0.bn1.weight"])  # no such tensor
    assert not feeds("layers.*.weight", ["layers.0.weight", "layers.0.bn.weight"])  # no module name to read
    assert not feeds("l.*.conv1.weight", ["l.0.conv1.weight", "l.0.conv2.weight", "l.0.bn2.weight"])  # bn2 is conv2's
    assert feeds("m.*.att.dense.weight", ["m.0.att.dense.weight", "m.0.att.bn.weight"])  # a short sibling name
    assert feeds("e.*.blk.dense.weight", ["e.0.blk.dense.weight", "e.0.blk.norm.inner.weight"])  # a deeper sibling
    assert not feeds("m.*.att.fc1.weight", ["m.0.att.fc1.weight", "m.0.att.LayerNorm.weight"])  # numbered: conv rule
    top = ["features.0.0.weight", "features.0.1.weight", "features.0.1.running_var", "features.0.2.weight"]
    assert feeds("features.*.0.weight", top)  # a Sequential at the layer's top level: entry 1 keeps statistics
    assert not feeds("features.*.1.weight", top)  # entry 2 is no BatchNorm, though another entry is one
    assert feeds("*.conv1.weight", ["0.conv1.weight", "0.bn1.weight", "1.conv1.weight"])  # layers at the top level


def _raw_safetensors(path, tensors, metadata=None):
    """A safetensors file written byte by byte: {name: (dtype string, shape, raw bytes)}, and the header's
    ``__metadata__`` (strings) when given."""
    header, blobs, off = ({"__metadata__": metadata} if metadata else {}), [], 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    head = json.dumps(header).encode()
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))


def test_unsupported_dtypes_are_named_and_nonfinite_paths_left_out_while_others_run(tmp_path):
    L = 9
    rng = np.random.default_rng(0)
    good = rng.standard_normal((L, 4, 4)).astype(np.float32)
    bad = rng.standard_normal((L, 4, 4)).astype(np.float32)
    bad[5, 1, 2] = np.nan
    t = {f"blocks.{k}.w": ("F32", (4, 4), good[k].tobytes()) for k in range(L)}
    t.update({f"blocks.{k}.v": ("F32", (4, 4), bad[k].tobytes()) for k in range(L)})
    t.update({f"blocks.{k}.q": ("F8_E9M9", (4, 4), bytes(16)) for k in range(L)})  # no such dtype
    t["blocks.0.count"] = ("I64", (1,), (7).to_bytes(8, "little"))
    f = tmp_path / "m.safetensors"
    _raw_safetensors(f, t)
    res = analyze_checkpoint(f)
    assert [r["name"] for r in res["paths"]] == ["blocks.*.w"]
    left = {s["name"]: s["reason"] for s in res["skipped"]}
    assert left["blocks.*.v"] == (f"non-finite: {f}: path 'blocks.*.v' has NaN or inf weights (first in tensor "
                                  f"'blocks.5.v', layer 5)")
    assert left["blocks.3.q"] == "dtype F8_E9M9: not a floating-point weight"
    assert left["blocks.0.count"].startswith("dtype I64: not a")
    # a state_dict with integer and complex tensors only: the error names what was left out and why
    torch.save({"layers.0.idx": torch.arange(4), "layers.1.idx": torch.arange(4),
                "layers.0.z": torch.ones(2, dtype=torch.complex64)}, tmp_path / "ints.pt")
    with pytest.raises(InvalidArgument, match=r"no weight path .*dtype int64: not a floating-point weight"):
        analyze_checkpoint(tmp_path / "ints.pt")


@pytest.mark.parametrize("name,legacy", [("resnet20.th", True), ("model.pth.tar", False), ("last.ckpt", False),
                                         ("weights", True)])
def test_checkpoints_are_recognized_by_content_whatever_their_name(tmp_path, name, legacy):
    # the published CIFAR ResNets are legacy torch.save files named .th, wrapped as {"state_dict": ...}
    tensors, paths = state(seed=30)
    sd = {"state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in tensors.items()}, "best_prec1": 91.7}
    torch.save(sd, tmp_path / name, _use_new_zipfile_serialization=not legacy)
    check_rows(analyze_checkpoint(tmp_path / name)["paths"], paths)
    st_numpy.save_file(tensors, tmp_path / "renamed.weights")
    check_rows(analyze_checkpoint(tmp_path / "renamed.weights")["paths"], paths)
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(InvalidArgument, match="notes.txt: not a checkpoint odecheck reads"):
        analyze_checkpoint(tmp_path / "notes.txt")


def test_batchnorm_buffers_are_left_out_unless_asked_for(tmp_path):
    tensors, paths = state(seed=40)
    for k in range(L):
        tensors[f"layer1.{k}.bn1.running_mean"] = np.full(4, 0.1 * k, np.float32)
        tensors[f"layer1.{k}.bn1.running_var"] = np.full(4, 1.0 + k, np.float32)
        tensors[f"layer1.{k}.bn1.weight"] = np.ones(4, np.float32)
    st_numpy.save_file(tensors, tmp_path / "bn.safetensors")
    res = analyze_checkpoint(tmp_path / "bn.safetensors")
    names = {r["name"] for r in res["paths"]}
    assert "layer1.*.bn1.weight" in names and not any("running" in n for n in names)
    left = [s for s in res["skipped"] if "running" in s["name"]]
    assert len(left) == 2 * L and all(s["reason"].startswith("a BatchNorm buffer") for s in left)
    names = {r["name"] for r in analyze_checkpoint(tmp_path / "bn.safetensors", include_buffers=True)["paths"]}
    assert {"layer1.*.bn1.running_mean", "layer1.*.bn1.running_var"} <= names
    out = CliRunner().invoke(app, ["analyze", str(tmp_path / "bn.safetensors"), "--include-buffers",
                                   "--json", str(tmp_path / "bn.json")])
    assert out.exit_code == 0, out.output
    rows = json.loads((tmp_path / "bn.json").read_text())["paths"]
    assert any(r["name"] == "layer1.*.bn1.running_var" for r in rows)


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model", "model_state_dict", "net"])
def test_state_dicts_wrapped_and_prefixed(tmp_path, wrapper):
    tensors, paths = state(seed=20)
    sd = {f"module.{k}": torch.from_numpy(v) for k, v in tensors.items()}  # saved from DataParallel
    torch.save(sd if wrapper is None else {wrapper: sd, "epoch": 3}, tmp_path / "ckpt.pth")
    check_rows(analyze_checkpoint(tmp_path / "ckpt.pth")["paths"], paths)


def test_chunks_of_any_size_give_the_same_statistics(tmp_path):
    tensors, paths = state(seed=30)
    st_numpy.save_file(tensors, tmp_path / "m.safetensors")
    whole = analyze_checkpoint(tmp_path / "m.safetensors", chunk=1 << 20)["paths"]
    for chunk in (100, 64, 7):  # misaligned chunks are rounded to the 64 jackknife groups
        rows = analyze_checkpoint(tmp_path / "m.safetensors", chunk=chunk)["paths"]
        for a, b in zip(whole, rows, strict=True):
            assert a["name"] == b["name"] and a["hurst_ci"] == pytest.approx(b["hurst_ci"], abs=1e-12)
            for stat in ("quadratic_variation", "max_increment", "max_norm", "root_sum_squares"):
                assert a[stat] == pytest.approx(b[stat], rel=1e-12), stat
            assert a["increments"] == pytest.approx(b["increments"], rel=1e-12)
            assert a["norms"] == pytest.approx(b["norms"], rel=1e-12)


@pytest.mark.parametrize("where", ["everywhere", "one late entry"])
def test_huge_values_streamed_scaled_exactly(tmp_path, where):
    # float64 weights near 1e300, read chunk by chunk: the squares' sums would overflow, so the path is read
    # again as Z 2^-k (k from its largest entry), exactly as the in-memory rule computes Z 2^-k; the
    # scale-bearing statistics are multiplied back, nothing is inf or NaN but the quadratic variation
    # (beyond float64 here, stated as inf)
    import warnings

    Z = np.cumsum(np.random.default_rng(7).standard_normal((16, 40, 10)), 0)
    if where == "everywhere":
        Z = np.ldexp(Z, 990)
    else:  # only the last chunk's last column is huge: the first chunks were summed unscaled, then thrown away
        Z[:, -1, -1] = np.ldexp(Z[:, -1, -1], 990)
    st_numpy.save_file({f"blocks.{k}.w": Z[k] for k in range(16)}, tmp_path / "big.safetensors")
    k = int(np.frexp(np.abs(Z).max())[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (row,) = analyze_checkpoint(tmp_path / "big.safetensors", chunk=64)["paths"]
    small = path_stats(np.ldexp(Z, -k))  # the scaled path, in memory
    assert row["regime"] == small.regime and row["hurst_ci"] == pytest.approx(small.hurst_ci, abs=1e-12)
    assert row["max_normalized_increment"] == pytest.approx(small.max_normalized_increment, rel=1e-12)
    for stat in ("max_increment", "max_norm", "root_sum_squares"):
        assert row[stat] == pytest.approx(np.ldexp(getattr(small, stat), k), rel=1e-12), stat
        assert np.isfinite(row[stat])
    assert row["increments"] == pytest.approx([np.ldexp(x, k) for x in small.increments], rel=1e-12)
    with np.errstate(over="ignore"):
        qv = np.ldexp(small.quadratic_variation, 2 * k)
    assert row["quadratic_variation"] == (pytest.approx(qv, rel=1e-12) if np.isfinite(qv) else np.inf)


def test_bfloat16_tensors_are_read_as_torch_reads_them(tmp_path):
    g = torch.Generator().manual_seed(0)
    layers = {f"blocks.{k}.w": torch.randn(8, 9, generator=g).to(torch.bfloat16) for k in range(6)}
    st_torch.save_file(layers, tmp_path / "bf16.safetensors")
    (ref,) = [t for t in list_tensors(tmp_path / "bf16.safetensors") if t.name == "blocks.3.w"]
    assert ref.dtype == "BF16"
    np.testing.assert_array_equal(ref.flat(0, 72), layers["blocks.3.w"].double().reshape(-1).numpy())
    np.testing.assert_array_equal(ref.flat(10, 20), layers["blocks.3.w"].double().reshape(-1)[10:20].numpy())


def test_a_stage_whose_shape_changes_is_split_and_reported(tmp_path):
    g = torch.Generator().manual_seed(1)
    sd = {"layer2.0.conv1.weight": torch.randn(8, 4, 3, 3, generator=g)}  # the stage's first block downsamples
    sd.update({f"layer2.{k}.conv1.weight": torch.randn(8, 8, 3, 3, generator=g) for k in range(1, 4)})
    sd["layer2.0.downsample.0.weight"] = torch.randn(8, 4, 1, 1, generator=g)
    torch.save(sd, tmp_path / "resnet.pt")
    paths, skipped = group_paths(list_tensors(tmp_path / "resnet.pt"))
    assert [(p.name, p.indices) for p in paths] == [("layer2.*.conv1.weight[1:4]", (1, 2, 3))]
    assert {s["name"] for s in skipped} == {"layer2.*.conv1.weight[0:1]", "layer2.*.downsample.0.weight"}
    assert all("single layer" in s["reason"] for s in skipped)
    res = CliRunner().invoke(app, ["analyze", str(tmp_path / "resnet.pt"), "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "left out: layer2.*.conv1.weight[0:1]" in res.output
    out = json.loads((tmp_path / "r.json").read_text())
    assert [r["name"] for r in out["paths"]] == ["layer2.*.conv1.weight[1:4]"] and len(out["skipped"]) == 2


def test_pickles_load_tensors_only_and_bad_files_are_named(tmp_path):
    import collections

    torch.save({"layers.0.w": torch.zeros(2), "layers.1.w": torch.zeros(2), "obj": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(InvalidArgument, match="only tensors are loaded"):
        list_tensors(tmp_path / "evil.pt")
    torch.save(collections.OrderedDict({"layers.0.w": torch.zeros(3), "layers.1.w": torch.ones(3)}), tmp_path / "ok.pt")
    assert [p.name for p in group_paths(list_tensors(tmp_path / "ok.pt"))[0]] == ["layers.*.w"]
    st_numpy.save_file({"a.0.w": np.zeros(1000, np.float32), "a.1.w": np.zeros(1000, np.float32)}, tmp_path / "t.safetensors")
    data = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(InvalidArgument, match="outside the data section .*truncated"):
        list_tensors(tmp_path / "t.safetensors")
    (tmp_path / "x.safetensors").write_bytes(b"\x05")
    with pytest.raises(InvalidArgument, match="corrupt safetensors"):
        list_tensors(tmp_path / "x.safetensors")
    with pytest.raises(InvalidArgument, match="no such file"):
        list_tensors(tmp_path / "missing.safetensors")
    nan = {"h.0.w": np.zeros(8, np.float32), "h.1.w": np.full(8, np.nan, np.float32), "h.2.w": np.zeros(8, np.float32)}
    st_numpy.save_file(nan, tmp_path / "nan.safetensors")
    res = analyze_checkpoint(tmp_path / "nan.safetensors")  # the path is left out, named, nothing raised
    assert res["paths"] == [] and "NaN or inf weights (first in tensor 'h.1.w', layer 1)" in res["skipped"][0]["reason"]


def test_small_and_constant_paths(tmp_path):
    # fewer than 8 entries per layer: read whole, block bootstrap; a constant path gets no regime
    Z = np.cumsum(np.random.default_rng(2).standard_normal((40, 3)), axis=0).astype(np.float32)
    tensors = {f"stack.{k}.v": Z[k] for k in range(40)}
    tensors.update({f"const.{k}.v": np.ones(16, np.float32) for k in range(10)})
    st_numpy.save_file(tensors, tmp_path / "s.safetensors")
    rows = {r["name"]: r for r in analyze_checkpoint(tmp_path / "s.safetensors")["paths"]}
    ref = path_stats(Z.astype(np.float64))
    assert rows["stack.*.v"]["hurst_ci"] == pytest.approx(list(ref.hurst_ci)) and rows["stack.*.v"]["regime"] == ref.regime
    assert rows["const.*.v"]["regime"] == "inconclusive" and rows["const.*.v"]["max_increment"] == 0.0
    assert rows["const.*.v"]["regime_reason"].startswith("constant path: every increment is 0")


def test_cli_folder_figures_and_key(tmp_path):
    tensors, paths = state(seed=40)
    (tmp_path / "ck").mkdir()
    st_numpy.save_file(tensors, tmp_path / "ck" / "model.safetensors")
    res = CliRunner().invoke(app, ["analyze", str(tmp_path / "ck"), "--key", "q_proj", "--figures",
                                   str(tmp_path / "fig"), "--json", str(tmp_path / "o.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "o.json").read_text())
    assert [r["name"] for r in out["paths"]] == ["model.layers.*.self_attn.q_proj.weight"]
    assert len(out["paths"][0]["increments"]) == L - 1 and len(out["paths"][0]["norms"]) == L
    assert [p.name for p in (tmp_path / "fig").glob("*.png")] == ["overview-000-ck.png"]  # one file, no family
    res = CliRunner().invoke(app, ["analyze", str(tmp_path / "ck"), "--key", "q_proj", "--figures",
                                   str(tmp_path / "fig2"), "--path-figures"])
    assert res.exit_code == 0 and len(list((tmp_path / "fig2").glob("*.png"))) == 2  # and the path's own
    res = CliRunner().invoke(app, ["analyze", str(tmp_path / "ck"), "--key", "nothing"])
    assert res.exit_code == 2 and "--key 'nothing': expected a part of a weight path's name in" in res.output


def test_path_statistics_needs_no_more_than_a_chunk_in_memory(tmp_path, monkeypatch):
    # every read asks for at most `chunk` columns of one layer
    tensors, _ = state(seed=50)
    st_numpy.save_file(tensors, tmp_path / "m.safetensors")
    paths, _ = group_paths(list_tensors(tmp_path / "m.safetensors"))
    from odecheck import checkpoints

    sizes = []
    original = checkpoints.TensorRef.flat

    def spy(self, a, b):
        sizes.append(b - a)
        return original(self, a, b)

    monkeypatch.setattr(checkpoints.TensorRef, "flat", spy)
    path_statistics(paths[0], chunk=64)
    assert max(sizes) == 64 and sum(sizes) == L * P


def _raw_header(path, header_text: str, data: bytes = b"\0" * 64, length: int | None = None):
    """A safetensors file from a header written as text (anything, valid or not) and a data section."""
    head = header_text.encode("utf-8", "surrogatepass")
    path.write_bytes((len(head) if length is None else length).to_bytes(8, "little") + head + data)
    return path


@pytest.mark.parametrize("header,data,needle", [
    ('[1, 2]', b"", "the header is a JSON list, not an object"),
    ('[' * 200_000 + ']' * 200_000, b"", "nested too deep"),
    ('{"w": {"dtype": "F32", "shape": [2], "data_offsets": ["0", "8"]}}', b"\0" * 8, "malformed header entry"),
    ('{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0.0, 8.0]}}', b"\0" * 8, "malformed header entry"),
    ('{"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}', b"\0" * 8, "data_offsets [-8, 0] outside"),
    ('{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}', b"\0" * 8, "data_offsets [0, 16] outside"),
    ('{"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}}', b"", "has 0 bytes for shape"),
    ('{"w": {"dtype": "F32", "shape": [-2, -2], "data_offsets": [0, 16]}}', b"\0" * 16, "negative dimension"),
    ('{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
     '"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}', b"\0" * 16, "duplicate key 'w'"),
    ('{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, '
     '"b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}', b"\0" * 16, "'a' and 'b' overlap"),
    ('{"w": [1, 2]}', b"", "malformed header entry"),
])
def test_hostile_safetensors_headers_are_refused_in_one_line(tmp_path, header, data, needle):
    f = _raw_header(tmp_path / "h.safetensors", header, data)
    with pytest.raises(InvalidArgument) as e:
        list_tensors(f)
    assert needle in str(e.value) and str(f) in str(e.value) and "\n" not in str(e.value)


def test_a_header_longer_than_the_file_is_named_as_such(tmp_path):
    f = _raw_header(tmp_path / "h.safetensors", "{}", b"", length=99_999_999)
    with pytest.raises(InvalidArgument, match="a header of 99999999 bytes in a file of 10"):
        list_tensors(f)


def test_a_negative_offset_never_reads_header_bytes_as_weights(tmp_path):
    # before: [-N, ...] pointed into the header, whose bytes were analyzed as weights (max increment 5e33)
    hdr = {f"layers.{k}.w": {"dtype": "F32", "shape": [2], "data_offsets": [8 * k - 8, 8 * k]} for k in range(9)}
    f = _raw_header(tmp_path / "h.safetensors", json.dumps(hdr), b"\0" * 64)
    with pytest.raises(InvalidArgument, match="outside the data section"):
        analyze_checkpoint(f)


def test_a_folder_with_a_link_out_of_it_is_refused_before_reading(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    st_numpy.save_file({"layers.0.w": np.ones((2, 2), np.float32)}, outside / "secret.safetensors")
    model = tmp_path / "model"
    model.mkdir()
    st_numpy.save_file({"layers.0.w": np.ones((2, 2), np.float32)}, model / "model-00001-of-00002.safetensors")
    (model / "model-00002-of-00002.safetensors").symlink_to(outside / "secret.safetensors")
    with pytest.raises(InvalidArgument, match="outside the checkpoint's folder"):
        list_tensors(model)
    (model / "model-00002-of-00002.safetensors").unlink()
    (model / "parts").mkdir()
    st_numpy.save_file({"layers.1.w": np.ones((2, 2), np.float32)}, model / "parts" / "second.safetensors")
    (model / "model-00002-of-00002.safetensors").symlink_to(model / "parts" / "second.safetensors")  # inside: fine
    assert sorted(t.name for t in list_tensors(model)) == ["layers.0.w", "layers.1.w"]


@pytest.mark.parametrize("size,ok", [([1, 1], True), ([1, 128], True), ([64, 1], True), ([0, 128], False),
                                     ([128, 0], False), ([128], False), (["a", 3], False), ("128x128", False)])
def test_fp8_block_sizes_the_checkpoint_may_give(tmp_path, size, ok):
    from odecheck.checkpoints import fp8_block_size

    st_numpy.save_file({"w": np.zeros(2, np.float32)}, tmp_path / "m.safetensors",
                       metadata={"weight_block_size": json.dumps(size) if not isinstance(size, str) else size})
    if ok:
        assert fp8_block_size(str(tmp_path / "m.safetensors")) == (tuple(size), "header metadata")
    else:
        shown = repr(size) if isinstance(size, str) else repr(json.loads(json.dumps(size)))
        with pytest.raises(InvalidArgument, match=r"m.safetensors __metadata__: weight_block_size (.*) is not two positive") as e:
            fp8_block_size(str(tmp_path / "m.safetensors"))
        assert f"weight_block_size {shown} is not" in str(e.value)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "x"}))  # no quantization_config: the header decides
    if ok:
        assert fp8_block_size(str(tmp_path / "m.safetensors"))[1] == "header metadata"


def test_fp8_scale_entries_and_their_neighbours(tmp_path):
    rng = np.random.default_rng(3)
    t, _, _ = _fp8_layers(rng, 1, 8, 8, (1, 1), torch.float8_e4m3fn, "F8_E4M3")
    t["lone.weight_scale_inv"] = ("F32", (1, 1), np.ones((1, 1), np.float32).tobytes())  # no base tensor
    t["plain.weight"] = ("F32", (2, 2), np.arange(4, dtype=np.float32).tobytes())  # not FP8: never scaled
    t["plain.weight_scale_inv"] = ("F32", (1, 1), np.full((1, 1), 3.0, np.float32).tobytes())
    t["plain2.weight"] = ("F32", (2, 2), np.arange(4, dtype=np.float32).tobytes())  # its "scales" fit no block
    t["plain2.weight_scale_inv"] = ("F32", (2, 2), np.ones((2, 2), np.float32).tobytes())
    t["vec.weight"] = ("F8_E4M3", (8,), torch.ones(8).to(torch.float8_e4m3fn).view(torch.uint8).numpy().tobytes())
    t["vec.weight_scale_inv"] = ("F32", (1, 1), np.ones((1, 1), np.float32).tobytes())
    f = tmp_path / "m.safetensors"
    _raw_safetensors(f, t)
    refs = {r.name: r for r in list_tensors(f)}
    scale = refs["layers.0.mlp.weight_scale_inv"]
    assert scale.reason == "the dequantization scale of 'layers.0.mlp.weight', applied to it"
    assert (scale.file, scale.dtype, scale.shape) == (str(f), "F32", (1, 1))
    assert refs["lone.weight_scale_inv"].reason == "" and refs["plain.weight_scale_inv"].reason == ""
    np.testing.assert_array_equal(refs["plain.weight"].flat(0, 4), [0, 1, 2, 3])
    assert refs["plain2.weight"].reason == "" and refs["plain2.weight_scale_inv"].reason == ""
    vec = refs["vec.weight"]
    assert vec.reason == "an FP8 tensor of shape [8] with block scales: a block-scaled FP8 weight is a matrix"
    assert (vec.file, vec.name, vec.shape, vec.dtype, vec.source) == (str(f), "vec.weight", (8,), "F8_E4M3", None)
    w = refs["layers.0.mlp.weight"]
    assert (w.file, w.shape, w.dtype) == (str(f), (8, 8), "F8_E4M3") and w.reason == ""


def test_an_fp8_grid_mismatch_names_the_block_and_where_it_came_from(tmp_path):
    t, _, _ = _fp8_layers(np.random.default_rng(4), 1, 300, 200, (3, 2), torch.float8_e4m3fn, "F8_E4M3")
    _raw_safetensors(tmp_path / "m.safetensors", t)
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": {"weight_block_size": [96, 64]}}))
    ref = {r.name: r for r in list_tensors(tmp_path / "m.safetensors")}["layers.0.mlp.weight"]
    assert ref.reason.endswith("does not match the shape [300, 200] in blocks of 96 x 64 (config.json): expected [4, 4]")
    assert (ref.file, ref.shape, ref.dtype, ref.source) == (str(tmp_path / "m.safetensors"), (300, 200), "F8_E4M3", None)
    (tmp_path / "config.json").unlink()
    _raw_safetensors(tmp_path / "m.safetensors", t, metadata={"weight_block_size": "[96, 64]"})
    ref = {r.name: r for r in list_tensors(tmp_path / "m.safetensors")}["layers.0.mlp.weight"]
    assert "in blocks of 96 x 64 (header metadata): expected [4, 4]" in ref.reason


def test_a_folder_of_two_checkpoints_is_never_spliced_into_one_path(tmp_path):
    # before: layers 0-2 of a 3-layer net and 3-8 of a 9-layer one made one "path" (exit 0)
    folder = tmp_path / "two"
    folder.mkdir()
    rng = np.random.default_rng(0)
    st_numpy.save_file({f"layers.{k}.w": rng.standard_normal((4, 4)).astype(np.float32) for k in range(3)},
                       folder / "small.safetensors")
    st_numpy.save_file({f"layers.{k}.w": rng.standard_normal((4, 4)).astype(np.float32) for k in range(9)},
                       folder / "big.safetensors")
    with pytest.raises(InvalidArgument, match="2 checkpoint files that are not one set of shards"):
        list_tensors(folder)
    from odecheck.analyze import analyze_files

    res = analyze_files([folder])  # the command analyzes each file as its own checkpoint
    assert sorted((r["file"].rsplit("/", 1)[-1], r["depth"]) for r in res["paths"]) == [
        ("big.safetensors", 9), ("small.safetensors", 3)]
    from odecheck.analysis.checkpoints import is_shard_set

    names = lambda *n: [tmp_path / x for x in n]  # noqa: E731
    assert is_shard_set(names("m-00001-of-00002.safetensors", "m-00002-of-00002.safetensors"))
    assert not is_shard_set(names("m-00001-of-00003.safetensors", "m-00002-of-00003.safetensors"))
    assert not is_shard_set(names("a-00001-of-00002.safetensors", "b-00002-of-00002.safetensors"))
    assert not is_shard_set(names("m-00001-of-00002.safetensors", "m-00001-of-00002.bin"))


def test_special_files_are_refused_before_opening(tmp_path):
    # in a child process with a time limit: without the check, opening the FIFO blocks forever, and the test
    # must fail by the timeout instead of hanging the suite
    import os
    import subprocess
    import sys

    fifo = tmp_path / "weights.th"
    os.mkfifo(fifo)  # reading it would block forever
    code = ("import sys\nfrom odecheck.checkpoints import list_tensors\nfrom odecheck.analyze import load_paths\n"
            "from odecheck._errors import InvalidArgument\n"
            "for f in (list_tensors, load_paths):\n"
            "    try:\n        f(sys.argv[1])\n    except InvalidArgument as e:\n        print(e)\n")
    try:
        res = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("reading a FIFO blocked: special files must be refused before opening")
    lines = res.stdout.strip().splitlines()
    assert res.returncode == 0 and len(lines) == 2, res.stdout + res.stderr
    assert all("not a regular file or folder" in line and str(fifo) in line for line in lines)


def test_count_limits_from_the_header_name_the_file(tmp_path, monkeypatch):
    import struct

    from odecheck.checkpoints import list_tensors

    from odecheck.analysis.checkpoints import refs, safetensors_reader

    # safetensors: five zero-size tensors against a limit of four (the limit is the module's constant)
    header = {f"l{i}.w": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(5)}
    raw = json.dumps(header).encode()
    path = tmp_path / "many.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    assert len(list_tensors(path)) == 5
    monkeypatch.setattr(safetensors_reader, "MAX_TENSORS", 5)
    assert len(list_tensors(path)) == 5  # at the limit: read
    meta = tmp_path / "meta.safetensors"  # __metadata__ is not a tensor: five tensors and it, at the limit
    raw_meta = json.dumps({"__metadata__": {"format": "pt"}, **header}).encode()
    meta.write_bytes(struct.pack("<Q", len(raw_meta)) + raw_meta)
    assert len(list_tensors(meta)) == 5
    monkeypatch.setattr(safetensors_reader, "MAX_TENSORS", 4)
    with pytest.raises(InvalidArgument, match=r"many.safetensors: its header declares 5 tensors, more than .* \(4\)"):
        list_tensors(path)
    # GGUF: a header declaring 2^40 tensors is refused from its 24 bytes, before the gguf package reads it
    g = tmp_path / "huge.gguf"
    g.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 0))
    with pytest.raises(InvalidArgument, match=r"huge.gguf: its header declares 1099511627776 tensors"):
        list_tensors(g)
    g.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, refs.MAX_METADATA + 1))
    with pytest.raises(InvalidArgument, match="metadata entries"):
        list_tensors(g)
    # the fixed header followed by more bytes, little- and big-endian (a swapped version), and counts beyond
    # 2^63 (unsigned): each read from the first 24 bytes
    g.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 0) + b"\0" * 100)
    with pytest.raises(InvalidArgument, match=r"declares 1099511627776 tensors"):
        list_tensors(g)
    g.write_bytes(b"GGUF" + struct.pack(">IQQ", 3, 1 << 40, 0) + b"\0" * 100)
    with pytest.raises(InvalidArgument, match=r"declares 1099511627776 tensors"):
        list_tensors(g)
    g.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, (1 << 64) - 1, 0))
    with pytest.raises(InvalidArgument, match=r"declares 18446744073709551615 tensors"):
        list_tensors(g)
    g.write_bytes(b"GGUF" + b"\0" * 5)
    with pytest.raises(InvalidArgument) as e:
        list_tensors(g)
    assert str(e.value) == f"{g}: unreadable or corrupt GGUF (not a GGUF header)"


def test_one_bad_file_is_reported_and_the_others_analyzed(tmp_path):
    from odecheck.analyze import analyze_files

    good = tmp_path / "good.npz"
    np.savez(good, w=np.cumsum(np.random.default_rng(1).standard_normal((32, 20)), 0))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x05")
    res = analyze_files([bad, good])
    assert [r["file"] for r in res["paths"]] == [str(good)]
    assert len(res["failed"]) == 1 and res["failed"][0]["file"] == str(bad)
    assert "unreadable or corrupt safetensors" in res["failed"][0]["error"]
    with pytest.raises(InvalidArgument, match=r"bad.safetensors: .* \(and 1 more files failed\)"):
        analyze_files([bad, bad])
    out = CliRunner().invoke(app, ["analyze", str(bad), str(good)])
    assert out.exit_code == 1 and "failed:" in out.output and "Traceback" not in out.output


def test_npz_sizes_are_checked_before_inflating(tmp_path, monkeypatch):
    import zipfile

    from odecheck.analyze import load_paths

    from odecheck.experiments import analyze as an

    # a small file that inflates to more than the bound (lowered here to 1 MB): refused from the zip directory
    monkeypatch.setattr(an, "NPZ_BYTES", 1 << 20)
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, w=np.zeros((64, 8192), np.float32))  # 2 MiB of zeros, a few KB compressed
    assert bomb.stat().st_size < 50_000
    with pytest.raises(InvalidArgument, match=r"bomb.npz: its arrays inflate to over 2097280 bytes"):
        load_paths(bomb)
    # an array header declaring 10^15 entries in a tiny member: refused before allocating
    hdr = np.lib.format
    liar = tmp_path / "liar.npz"
    with zipfile.ZipFile(liar, "w") as z, z.open("w.npy", "w") as fh:
        hdr.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (10**15,)})
        fh.write(b"\0" * 16)
    with pytest.raises(InvalidArgument, match=r"liar.npz: array 'w.npy' declares shape \(1000000000000000,\)"):
        load_paths(liar)


def test_a_training_script_checkpoint_with_numpy_scalars_and_its_arguments(tmp_path):
    # torch.save({"state_dict": ..., "epoch": np.int64, "best": np.float64, "args": Namespace}) as such scripts do
    import argparse

    sd = {f"layers.{k}.w": torch.randn(3, 3) for k in range(6)}
    torch.save({"state_dict": sd, "epoch": np.int64(90), "best_acc": np.float64(0.93),
                "args": argparse.Namespace(lr=0.1, arch="resnet20")}, tmp_path / "model_best.pth.tar")
    refs = list_tensors(tmp_path / "model_best.pth.tar")
    assert sorted(r.name for r in refs) == sorted(sd)

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"state_dict": sd, "x": Evil()}, tmp_path / "evil.pth.tar")
    with pytest.raises(InvalidArgument, match="unreadable or corrupt PyTorch checkpoint"):
        list_tensors(tmp_path / "evil.pth.tar")


def test_gguf_or_safetensors_named_bin_are_read_by_content(tmp_path):
    st_numpy.save_file({f"layers.{k}.w": np.full((2, 2), k, np.float32) for k in range(4)}, tmp_path / "model.bin")
    assert sorted(r.name for r in list_tensors(tmp_path / "model.bin")) == [f"layers.{k}.w" for k in range(4)]


def _hub_cache(root, repo="org/tiny", sha="0123abcd", depth=6, ref="main", shards=2):
    """A Hub cache laid out as huggingface_hub lays it: models--org--name/refs/<ref> holds <sha>, and every
    file of snapshots/<sha>/ is a relative link to its content in blobs/."""
    folder = root / ("models--" + repo.replace("/", "--"))
    snap, blobs = folder / "snapshots" / sha, folder / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir(exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / ref).write_text(sha)

    def link(name, write):
        blob = blobs / f"{sha}-{name}.blob"
        write(blob)
        (snap / name).symlink_to(Path("..") / ".." / "blobs" / blob.name)

    rng = np.random.default_rng(depth)
    names = [f"model.layers.{k}.mlp.weight" for k in range(depth)]
    weight_map = {}
    for s in range(shards):
        part = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        ws = {n: rng.standard_normal((4, 4)).astype(np.float32) for n in names[s::shards]}
        link(part, lambda b, ws=ws: st_numpy.save_file(ws, b))
        weight_map.update({n: part for n in names[s::shards]})
    link("model.safetensors.index.json", lambda b: b.write_text(json.dumps({"weight_map": weight_map})))
    return folder


def test_models_by_hub_id_from_the_cache_never_the_network(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants as hc
    from odecheck.analyze import analyze_files

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    cache = _hub_cache(tmp_path, depth=6)
    _hub_cache(tmp_path, depth=9, sha="feed0001", ref="v2")  # another revision of the same repo
    res = analyze_files(["hf://org/tiny"])
    assert [(r["name"], r["depth"]) for r in res["paths"]] == [("model.layers.*.mlp.weight", 6)]
    assert res["failed"] == []
    res = analyze_files(["hf://org/tiny@v2", str(cache)])  # a revision, and the cache folder itself (refs/main)
    assert sorted(r["depth"] for r in res["paths"]) == [6, 9]
    res = analyze_files(["hf://org/missing", str(cache)])  # offline and not cached: one line, the rest analyzed
    assert len(res["failed"]) == 1 and res["failed"][0]["error"].startswith("hf://org/missing: not in the Hub cache")
    out = CliRunner().invoke(app, ["analyze", "hf://org/tiny"], env={"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert out.exit_code == 0 and "model.layers." in out.output and "0123abcd" in out.output, out.output
    for bad in ("hf://", "hf://org/name@", "hf://a b/c"):
        with pytest.raises(InvalidArgument, match="not a Hub id"):
            analyze_files([bad])


def test_gguf_types_the_reader_lacks_are_left_out_by_name_and_f64_read(tmp_path):
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(tmp_path / "t.gguf"), "llama")
    for k in range(6):
        w.add_tensor(f"blk.{k}.f64.weight", np.full((4, 32), k, np.float64))
        w.add_tensor(f"blk.{k}.i32.weight", np.full((4, 32), k, np.int32))
        w.add_tensor(f"blk.{k}.q81.weight", np.zeros((4, 40), np.uint8), raw_dtype=gguf.GGMLQuantizationType.Q8_1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    refs = {r.name: r for r in list_tensors(tmp_path / "t.gguf")}
    assert refs["blk.0.i32.weight"].reason == "GGUF type I32: not a floating-point weight"
    assert refs["blk.0.q81.weight"].reason == "GGUF type Q8_1: the gguf package has no dequantization for it"
    np.testing.assert_array_equal(refs["blk.3.f64.weight"].flat(0, 128), np.full(128, 3.0))
    res = analyze_checkpoint(tmp_path / "t.gguf")
    assert [p["name"] for p in res["paths"]] == ["blk.*.f64.weight"]


def test_onnx_bf16_read_and_a_short_initializer_left_out(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    inits = []
    for k in range(6):
        inits.append(helper.make_tensor(f"layers.{k}.b", TensorProto.BFLOAT16, [4],
                                        vals=np.full(4, 0x3F80 + k, np.uint16).tobytes(), raw=True))
    short = TensorProto(name="short.w", data_type=TensorProto.FLOAT, dims=[10, 10], raw_data=b"\0" * 8)
    onnx.save(helper.make_model(helper.make_graph([], "g", [], [], initializer=[*inits, short])), tmp_path / "t.onnx")
    refs = {r.name: r for r in list_tensors(tmp_path / "t.onnx")}
    assert refs["layers.2.b"].dtype == "bfloat16" and refs["layers.2.b"].reason == ""
    # bfloat16 0x3F82 is 1 + 2/128: the high half of a float32
    np.testing.assert_array_equal(refs["layers.2.b"].flat(0, 4), np.full(4, 1 + 2 / 128))
    assert refs["short.w"].reason.startswith("unreadable initializer (cannot reshape")


def test_torch_entries_that_are_not_dense_weights(tmp_path):
    # sparse and meta tensors left out by name, an int key named by its text, Parameters read (they raised)
    sd = {**{f"layers.{k}.w": torch.randn(3, 3).to_sparse() for k in range(5)},
          **{f"h.{k}.w": torch.empty(2, device="meta") for k in range(5)}, 7: torch.randn(4),
          **{f"p.{k}.w": torch.nn.Parameter(torch.randn(3, 3)) for k in range(5)}}
    torch.save(sd, tmp_path / "mix.pt")
    res = analyze_checkpoint(tmp_path / "mix.pt")
    assert [p["name"] for p in res["paths"]] == ["p.*.w"]
    assert {s["reason"] for s in res["skipped"]} >= {"a meta tensor: no data was saved", "a sparse tensor: not a dense weight"}
    assert "7" in {t.name for t in list_tensors(tmp_path / "mix.pt")}


def test_names_that_cannot_print_or_would_be_mathtext(tmp_path):
    # a lone surrogate (valid in a JSON header) crashed printing; a TeX-like name crashed the figures
    hdr, off, data = {}, 0, b""
    for k in range(9):
        for n in (f"layers.{k}.w\\ud800", f"tex.{k}.w$\\\\frac{{"):
            hdr[n] = {"dtype": "F32", "shape": [4, 4], "data_offsets": [off, off + 64]}
            data += np.random.default_rng(k).standard_normal(16).astype(np.float32).tobytes()
            off += 64
    head = "{" + ", ".join(f'"{n}": {json.dumps(v)}' for n, v in hdr.items()) + "}"
    f = _raw_header(tmp_path / "odd.safetensors", head, data)
    out = CliRunner().invoke(app, ["analyze", str(f), "--out", str(tmp_path / "rep")])
    assert out.exit_code == 0, out.output
    assert "layers.*.w\\ud800" in (tmp_path / "rep" / "report.md").read_text()
    assert any(p.name.startswith("family-") or p.name.startswith("overview-") for p in (tmp_path / "rep").iterdir())


def _zip(path, members: dict[str, bytes]):
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _st_bytes(header_len: int, rest: bytes = b"{}") -> bytes:
    return header_len.to_bytes(8, "little") + rest


def test_sniff_names_each_format_by_its_first_bytes(tmp_path):
    # the content decides, whatever the name: each branch of sniff and its boundaries
    from odecheck.analysis.checkpoints import sniff

    torch.save({"w": torch.zeros(2)}, tmp_path / "zip.data")  # archive/data.pkl inside
    torch.save({"w": torch.zeros(2)}, tmp_path / "legacy.data", _use_new_zipfile_serialization=False)
    with open(tmp_path / "arrays.data", "wb") as fh:  # np.savez would add .npz to a path
        np.savez(fh, w=np.zeros(3))
    cases = {
        "zip.data": "torch", "legacy.data": "torch", "arrays.data": "npz",
        "top.data": _zip(tmp_path / "top.data", {"data.pkl": b"x"}),  # data.pkl at the top level: torch
        "mixed.zip": _zip(tmp_path / "mixed.zip", {"a.npy": b"x", "b.txt": b"y"}),  # not every member an array
        "empty.zip": _zip(tmp_path / "empty.zip", {}),
        "named.pkl": _zip(tmp_path / "named.pkl", {"notdata.pkl": b"x"}),
    }
    expected = {"top.data": "torch", "mixed.zip": None, "empty.zip": None, "named.pkl": None}
    raw = {"g.bin": (b"GGUF" + bytes(20), "gguf"), "st.weights": (_st_bytes(2), "safetensors"),
           "edge.st": (_st_bytes(99_999_999), "safetensors"), "over.st": (_st_bytes(100_000_000), None),
           "short.st": (_st_bytes(2, b""), None), "text.txt": (b"hello world", None), "nobrace.st": (_st_bytes(2, b"[]"), None),
           "badzip.zip": (b"PK\x03\x04" + bytes(30), None), "empty": (b"", None)}
    for name, (data, kind) in raw.items():
        (tmp_path / name).write_bytes(data)
        expected[name] = kind
    for name, kind in {**{k: v for k, v in cases.items() if isinstance(v, str)}, **expected}.items():
        assert sniff(tmp_path / name) == kind, name
    assert sniff(tmp_path / "missing") is None  # unreadable: no kind, the caller says why


def test_a_folder_lists_its_checkpoint_files_by_suffix_or_content_and_nothing_else(tmp_path):
    from odecheck.analysis.checkpoints.listing import checkpoint_files

    for name in ("a.safetensors", "b.PT", "c.pth", "d.bin", "e.onnx", "f.SafeTensors"):
        (tmp_path / name).write_bytes(b"x")  # listed by suffix (any case), not read here
    torch.save({"w": torch.zeros(2)}, tmp_path / "g.ckpt")  # by content
    (tmp_path / "h").write_bytes(b"GGUF" + bytes(20))
    (tmp_path / "i.weights").write_bytes(_st_bytes(2))
    np.savez(tmp_path / "j.npz", w=np.zeros(2))  # arrays, not a checkpoint of a folder
    (tmp_path / "README.md").write_text("# model")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "sub.bin").mkdir()  # a folder, whatever its name
    assert [q.name for q in checkpoint_files(tmp_path)] == [
        "a.safetensors", "b.PT", "c.pth", "d.bin", "e.onnx", "f.SafeTensors", "g.ckpt", "h", "i.weights"]
    empty = tmp_path / "none"
    empty.mkdir()
    (empty / "README.md").write_text("# nothing")
    with pytest.raises(InvalidArgument) as e:
        checkpoint_files(empty)
    assert str(e.value) == f"{empty}: no .safetensors, .pt, .pth, .bin, .onnx or GGUF file in this folder"


def test_unprintable_names_are_escaped_exactly():
    from odecheck.analysis.checkpoints.listing import printable

    assert printable("a\ud800b") == "a\\ud800b"  # a lone surrogate: its escape
    assert printable("x\ny\tz\x00") == "x\\ny\\tz\\x00"  # control characters: theirs
    assert printable("plain.é.1") == "plain.é.1"  # printable text untouched, accents too


def _records(path):
    return sorted((r.file, r.name, r.shape, r.dtype, r.reason) for r in list_tensors(path))


def test_every_reader_records_file_name_shape_dtype_and_reason(tmp_path):
    # each reader's TensorRef, the read ones and the left-out ones, field by field
    f = tmp_path / "m.pt"
    torch.save({"a.0.w": torch.zeros(2, 3), "a.1.i": torch.zeros(4, dtype=torch.int64),
                "a.2.s": torch.zeros(2, 2).to_sparse(), "a.3.h": torch.zeros(5, dtype=torch.float16)}, f)
    assert _records(f) == [(str(f), "a.0.w", (2, 3), "torch.float32", ""),
                           (str(f), "a.1.i", (4,), "torch.int64", "dtype int64: not a floating-point weight"),
                           (str(f), "a.2.s", (2, 2), "torch.float32", "a sparse tensor: not a dense weight"),
                           (str(f), "a.3.h", (5,), "torch.float16", "")]
    g = tmp_path / "m.safetensors"
    st_numpy.save_file({"b.0.w": np.zeros((3, 2), np.float32), "b.1.i": np.zeros(4, np.int32)}, g)
    assert [r[:4] for r in _records(g)] == [(str(g), "b.0.w", (3, 2), "F32"), (str(g), "b.1.i", (4,), "I32")]
    assert _records(g)[0][4] == "" and "I32" in _records(g)[1][4]
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    inits = [TensorProto(name="c.2.short", data_type=TensorProto.FLOAT, dims=[10, 10], raw_data=b"\0" * 8),
             numpy_helper.from_array(np.zeros((2, 2), np.float32), "c.0.w"),  # after an unreadable one: still read
             numpy_helper.from_array(np.zeros(3, np.int64), "c.1.i"),
             helper.make_tensor("c.3.f8", TensorProto.FLOAT8E4M3FN, [4], vals=np.array([0x38, 0x40, 0x44, 0x48], np.uint8).tobytes(),
                                raw=True)]
    h = tmp_path / "m.onnx"
    onnx.save(helper.make_model(helper.make_graph([], "g", [], [], initializer=inits)), str(h))
    recs = _records(h)
    assert recs[:2] == [(str(h), "c.0.w", (2, 2), "float32", ""),
                        (str(h), "c.1.i", (3,), "int64", "dtype int64: not a floating-point weight")]
    assert recs[2][:4] == (str(h), "c.2.short", (10, 10), str(TensorProto.FLOAT))
    assert recs[2][4].startswith("unreadable initializer (cannot reshape") and len(recs[2][4]) <= len("unreadable initializer ()") + 80
    assert recs[3][1:] == ("c.3.f8", (4,), "float8_e4m3fn", "")  # FP8 E4M3: 0x38 = 1, 0x40 = 2, 0x44 = 3, 0x48 = 4
    (f8,) = [r for r in list_tensors(h) if r.name == "c.3.f8"]
    np.testing.assert_array_equal(f8.flat(0, 4), [1.0, 2.0, 3.0, 4.0])


@pytest.mark.parametrize("legacy", [False, True])
def test_a_pickle_payload_never_runs_in_either_torch_format(tmp_path, legacy):
    # a checkpoint whose pickle would call os.mkdir: refused in one line, and the folder is never made
    import os

    marker = tmp_path / "payload-ran"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    f = tmp_path / "evil.pt"
    torch.save({"layers.0.w": torch.zeros(2), "x": Evil()}, f, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(InvalidArgument) as e:
        list_tensors(f)
    assert not marker.exists()
    assert str(e.value) == (f"{f}: unreadable or corrupt PyTorch checkpoint (UnpicklingError); only tensors are "
                            "loaded (weights_only=True)")


def test_gguf_vectors_and_left_out_types_keep_file_shape_and_type(tmp_path):
    # 1-D tensors (biases, norms) are read whole as one row; an integer tensor is recorded with its type
    gguf = pytest.importorskip("gguf")
    f = tmp_path / "v.gguf"
    w = gguf.GGUFWriter(str(f), "llama")
    for k in range(5):
        w.add_tensor(f"blk.{k}.bias", np.arange(7, dtype=np.float32) + k)
    w.add_tensor("blk.0.ids", np.arange(6, dtype=np.int32).reshape(2, 3))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    recs = {r[1]: r for r in _records(f)}
    assert recs["blk.2.bias"] == (str(f), "blk.2.bias", (7,), "F32", "")
    assert recs["blk.0.ids"] == (str(f), "blk.0.ids", (2, 3), "I32", "GGUF type I32: not a floating-point weight")
    (bias,) = [r for r in list_tensors(f) if r.name == "blk.3.bias"]
    np.testing.assert_array_equal(bias.flat(0, 7), np.arange(7) + 3.0)
    np.testing.assert_array_equal(bias.flat(2, 5), np.arange(2, 5) + 3.0)


def test_a_torch_file_that_is_not_a_state_dict_says_what_it_holds(tmp_path):
    torch.save([torch.zeros(2), torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(InvalidArgument) as e:
        list_tensors(tmp_path / "list.pt")
    assert str(e.value) == f"{tmp_path / 'list.pt'}: expected a state_dict (a dict of tensors), got list"


def test_safetensors_header_lengths_and_shard_paths_at_their_edges(tmp_path):
    # a header one byte longer than the file allows; a length with the top bit set (2^64 - 1, not negative);
    # shards named with a folder or an absolute path, even inside the index's folder, are refused
    body = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    f = tmp_path / "long.safetensors"
    f.write_bytes(struct.pack("<Q", len(body) + 5) + body + b"\0" * 4)  # file: 8 + len + 4; header claims len + 5
    with pytest.raises(InvalidArgument) as e:
        list_tensors(f)
    assert str(e.value) == (f"{f}: unreadable or corrupt safetensors (a header of {len(body) + 5} bytes in a file of "
                            f"{8 + len(body) + 4})")
    g = tmp_path / "top.safetensors"
    g.write_bytes(struct.pack("<Q", 2**64 - 1) + body)
    with pytest.raises(InvalidArgument, match=f"a header of {2**64 - 1} bytes"):
        list_tensors(g)
    (tmp_path / "sub").mkdir()
    st_numpy.save_file({"w": np.zeros(2, np.float32)}, tmp_path / "sub" / "model.safetensors")
    for shard in ("sub/model.safetensors", str(tmp_path / "sub" / "model.safetensors")):
        idx = tmp_path / "model.safetensors.index.json"
        idx.write_text(json.dumps({"weight_map": {"w": shard}}))
        with pytest.raises(InvalidArgument) as e:
            list_tensors(idx)
        assert str(e.value) == f"{idx}: shard {shard!r} is not a file in the index's folder"


def test_a_tensor_whose_bytes_do_not_match_its_shape_is_named_exactly(tmp_path):
    f = _raw_header(tmp_path / "bad.safetensors",
                    json.dumps({"layers.0.w": {"dtype": "F32", "shape": [3], "data_offsets": [8, 16]}}), b"\0" * 16)
    with pytest.raises(InvalidArgument) as e:
        list_tensors(f)
    assert str(e.value) == f"{f}: tensor 'layers.0.w' has 8 bytes for shape [3] of F32"
    g = _raw_header(tmp_path / "dtype.safetensors",  # a dtype that is not a string, the rest well formed
                    json.dumps({"layers.0.w": {"dtype": 5, "shape": [2], "data_offsets": [0, 8]}}), b"\0" * 8)
    with pytest.raises(InvalidArgument) as e:
        list_tensors(g)
    assert str(e.value) == (f"{g}: tensor 'layers.0.w' has a malformed header entry (dtype a string, shape and "
                            "data_offsets lists of integers)")
    h = tmp_path / "short.safetensors"
    h.write_bytes(b"\x05\0\0")
    with pytest.raises(InvalidArgument) as e:
        list_tensors(h)
    assert str(e.value) == f"{h}: unreadable or corrupt safetensors (shorter than its header length)"
    idx = tmp_path / "broken.safetensors.index.json"
    idx.write_text("{not json")
    with pytest.raises(InvalidArgument) as e:
        list_tensors(idx)
    assert str(e.value) == f"{idx}: unreadable safetensors index (JSONDecodeError)"


def test_gguf_metadata_count_refused_by_name(tmp_path):
    g = tmp_path / "meta.gguf"
    g.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1 << 40))
    with pytest.raises(InvalidArgument) as e:
        list_tensors(g)
    assert str(e.value).startswith(f"{g}: its header declares 1099511627776 metadata entries")


def test_analyze_checkpoint_records_progress_keys_and_goes_on_after_a_nan_path(tmp_path):
    # a NaN path first: reported, the paths after it still analyzed; progress counts 1..n; the key filters the
    # left-out entries too; every row and left-out record has exactly its documented fields
    rng = np.random.default_rng(12)
    sd = {}
    for k in range(8):
        sd[f"a.{k}.w"] = np.full((4, 4), np.nan, np.float32) if k == 3 else rng.standard_normal((4, 4)).astype(np.float32)
        sd[f"b.{k}.w"] = rng.standard_normal((4, 4)).astype(np.float32)
        sd[f"c.{k}.i"] = np.zeros(3, np.int32)
    sd["b.0.extra"] = np.zeros(5, np.float32)  # a single layer of this shape
    st_numpy.save_file(sd, tmp_path / "m.safetensors")
    seen = []
    res = analyze_checkpoint(tmp_path / "m.safetensors", on_path=lambda name, i, n: seen.append((name, i, n)))
    assert [r["name"] for r in res["paths"]] == ["b.*.w"]  # analyzed after the NaN path
    assert seen == [("b.*.w", 2, 2)]  # the second of two paths (the NaN one reported, not counted as done)
    assert set(res["paths"][0]) == {"file", "name", "layers", "feeds_norm", *path_stats(np.ones((8, 8))).to_json()}
    left = {s["name"]: s for s in res["skipped"]}
    assert left["a.*.w"]["reason"].startswith("non-finite: ") and left["a.*.w"]["layers"] == list(range(8))
    assert all(set(s) == {"name", "layers", "shape", "reason"} for s in res["skipped"])
    assert left["b.*.extra"]["layers"] == [0] and left["b.*.extra"]["shape"] == [5]
    keyed = analyze_checkpoint(tmp_path / "m.safetensors", key="b.")
    assert {s["name"] for s in keyed["skipped"]} == {"b.*.extra"}  # the key filters what was left out too
    low = analyze_checkpoint(tmp_path / "m.safetensors", key="b.", level=0.5)["paths"][0]
    high = keyed["paths"][0]
    assert (low["hurst_ci"][1] - low["hurst_ci"][0]) < (high["hurst_ci"][1] - high["hurst_ci"][0])  # level is used
