import json

import numpy as np
import pytest
import torch
from odecheck.analyze import analyze, load_paths
from odecheck.init import member_generator
from typer.testing import CliRunner

import odecheck as oc
from odecheck.cli import app

runner = CliRunner()


def _state_dict(L, smooth=True):
    g = member_generator(0, L)
    sd = {}
    path = oc.gp_paths(9, L, 0.2, g).T.reshape(L, 3, 3) if smooth else torch.randn(L, 3, 3, generator=g)
    for k in range(L):
        sd[f"layers.{k}.conv1.weight"] = path[k].float()
    sd["head.weight"] = torch.randn(2, 2)
    return sd


def test_state_dict_grouping_and_scaling(tmp_path):
    depths = (16, 24, 32, 48, 64, 96, 128, 192, 256)
    for L in depths:
        torch.save(_state_dict(L), tmp_path / f"m{L}.pt")
    paths = [w for L in depths for w in load_paths(tmp_path / f"m{L}.pt")]
    assert {w.name for w in paths} == {"layers.*.conv1.weight"}
    res = analyze(paths)
    assert all(r["regime"] == "ode" for r in res["paths"])
    inc = next(s for s in res["scaling"] if s["statistic"] == "max_increment")
    assert -1.2 < inc["exponent"] < -0.8
    assert inc["limit"] == "ode" and inc["interval"] == "ols-t"  # one network per depth, nine depths
    three = analyze([w for w in paths if w.array.shape[0] in (32, 64, 128)])  # OLS-t on 1 dof: too wide to call
    assert next(s for s in three["scaling"] if s["statistic"] == "max_increment")["limit"] == "inconclusive"
    assert "limit" not in next(s for s in res["scaling"] if s["statistic"] == "max_norm")
    # the scale-free statistic: the same smooth family with each depth's weights rescaled by 10^k (as weight
    # decay before a normalization would) keeps its normalized exponent and loses its raw one
    rescaled = [type(w)(w.file, w.name, w.array * 10.0 ** i) for i, w in enumerate(paths)]
    res2 = analyze(rescaled)
    fit = {s["statistic"]: s["exponent"] for s in res2["scaling"]}
    norm = next(s["exponent"] for s in res["scaling"] if s["statistic"] == "max_normalized_increment")
    assert fit["max_normalized_increment"] == pytest.approx(norm, abs=1e-9) and -1.2 < norm < -0.8
    assert fit["max_increment"] > 0.5  # the raw exponent now follows the rescaling, not the path


def test_cli_json_fields(tmp_path):
    np.savez(tmp_path / "w.npz", V=np.random.default_rng(0).standard_normal((64, 4, 4)))
    res = runner.invoke(app, ["analyze", str(tmp_path / "w.npz"), "--json", str(tmp_path / "o.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "o.json").read_text())
    p = out["paths"][0]
    assert set(p) >= {"file", "name", "depth", "shape", "max_increment", "quadratic_variation", "max_norm",
                      "hurst", "hurst_ci", "regime"}
    assert p["regime"] == "none"


def test_stacked_npz(tmp_path):
    np.savez(tmp_path / "w.npz", V=np.cumsum(np.random.default_rng(0).standard_normal((3, 128, 4)), axis=1))
    paths = load_paths(tmp_path / "w.npz", stacked=True)
    assert [w.member for w in paths] == [0, 1, 2]


def test_an_npz_array_that_cannot_be_a_path_is_left_out_and_the_rest_analyzed(tmp_path):
    # as for the other formats: one NaN array, a scalar or a string array leaves that array out with its
    # reason, the file's good paths are analyzed (exit 0); the library call without `skipped` still refuses
    good = np.cumsum(np.random.default_rng(1).standard_normal((16, 30)), 0)
    np.savez(tmp_path / "m.npz", good=good, bad=np.where(np.eye(16, 30) > 0, np.nan, good), step=np.float64(3.0),
             note=np.array(["a", "b"]))
    res = runner.invoke(app, ["analyze", str(tmp_path / "m.npz"), "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "r.json").read_text())
    assert [r["name"] for r in out["paths"]] == ["good"]
    assert out["paths"][0]["max_increment"] == pytest.approx(np.linalg.norm(np.diff(good, axis=0), axis=1).max())
    left = {s["name"]: s["reason"] for s in out["skipped"]}
    assert left == {"bad": "has NaN or inf weights", "step": "of shape () has no layer axis (expected (L, ...) with L >= 2)",
                    "note": "has dtype <U1, expected numbers"}
    assert all(s["file"] == str(tmp_path / "m.npz") for s in out["skipped"])
    assert "left out: bad: has NaN or inf weights" in res.output
    with pytest.raises(oc.InvalidArgument, match="array 'bad' has NaN or inf weights"):
        load_paths(tmp_path / "m.npz")


def _write_bad(tmp_path, kind):
    if kind == "corrupt":
        (tmp_path / "x.npz").write_bytes(b"not a zip")
        return tmp_path / "x.npz", "corrupt"
    if kind == "nolayer":
        np.savez(tmp_path / "x.npz", V=np.float64(3.0))
        return tmp_path / "x.npz", "layer axis"
    if kind == "nan":
        np.savez(tmp_path / "x.npz", V=np.full((5, 2), np.nan))
        return tmp_path / "x.npz", "NaN"
    if kind == "shapes":
        torch.save({"layers.0.w": torch.zeros(2, 2), "layers.1.w": torch.zeros(3, 2)}, tmp_path / "x.pt")
        return tmp_path / "x.pt", "single layer of this shape"
    if kind == "corrupt_pt":
        (tmp_path / "x.pt").write_bytes(b"garbage")
        return tmp_path / "x.pt", "corrupt"
    return tmp_path / "missing.npz", "no such file"


@pytest.mark.parametrize("kind", ["corrupt", "nolayer", "nan", "shapes", "corrupt_pt", "missing"])
def test_bad_files_exit_2_one_line(tmp_path, kind):
    f, needle = _write_bad(tmp_path, kind)
    (tmp_path / "keep.json").write_text('{"old": 1}')
    res = runner.invoke(app, ["analyze", str(f), "--json", str(tmp_path / "keep.json")])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert json.loads((tmp_path / "keep.json").read_text()) == {"old": 1}


def test_analyze_reads_odecheck_train_output(tmp_path):
    from odecheck.config import RunConfig
    from odecheck.runner import run

    cfg = RunConfig.from_dict({"model": {"depth": 8, "dim": 4, "width": 5, "ensemble": 2, "init": "iid"},
                               "data": {"n": 8}, "train": {"steps": 3, "snapshots": [0, 3]}})
    run(cfg, tmp_path / "r")
    paths = load_paths(tmp_path / "r" / "weights.npz")
    names = sorted({w.name for w in paths})
    assert names == ["final/V", "final/W", "step0/V", "step0/W", "step3/V", "step3/W"]
    assert all(w.array.shape[0] == 8 and w.member in (0, 1) for w in paths)


def test_features_of_train_runs(tmp_path):
    # hidden states along depth of the networks a train run saved: recomputed here by the plain
    # recursion h_{k+1} = h_k + L^-beta V_k tanh(h_k) from the saved weights (A = I: d = q)
    import tomli_w
    from odecheck.analyze import feature_paths
    from odecheck.config import RunConfig
    from odecheck.runner import build_data

    rows = {}
    for init, beta in (("iid", 0.5), ("smooth(0.1)", 1.0)):
        cfg = {"model": {"block": "res1", "depth": 128, "dim": 8, "beta": beta, "init": init, "activation": "tanh",
                         "ensemble": 2, "dtype": "float64"},
               "data": {"n": 12}, "train": {"steps": 0, "snapshots": [0]}}
        (tmp_path / f"{init}.toml").write_text(tomli_w.dumps(cfg))
        res = runner.invoke(app, ["train", str(tmp_path / f"{init}.toml"), "--out", str(tmp_path / init)])
        assert res.exit_code == 0, res.output
        paths = feature_paths(tmp_path / init)
        assert {(p.name, p.member) for p in paths} == {("features/final", 0), ("features/final", 1),
                                                      ("features/step0", 0), ("features/step0", 1)}
        V = np.load(tmp_path / init / "weights.npz")["step0/V"]  # (R, L, q, q)
        x = build_data(RunConfig.from_dict(cfg), torch.float64).x.numpy()
        h, hs = x, [x]
        for k in range(128):
            h = h + 128.0 ** -beta * np.tanh(h) @ V[1, k].T
            hs.append(h)
        (p1,) = [p for p in paths if p.name == "features/step0" and p.member == 1]
        np.testing.assert_allclose(p1.array, np.stack(hs).reshape(129, -1), rtol=1e-10, atol=1e-12)
        out = tmp_path / f"{init}.json"
        res = runner.invoke(app, ["analyze", str(tmp_path / init), "--features", "--json", str(out)])
        assert res.exit_code == 0, res.output
        rows[init] = json.loads(out.read_text())["paths"]
    assert {r["regime"] for r in rows["iid"]} == {"sde"}
    assert {r["regime"] for r in rows["smooth(0.1)"]} == {"ode"}
    # each row carries its network's Heun gain (claim 12): the estimator's value on the saved weights, rebuilt here
    # from weights.npz; smooth weights gain ~ L^2 and iid ones O(1), so every smooth gain exceeds every iid one
    from odecheck.estimators import heun_gain

    for init, beta in (("iid", 0.5), ("smooth(0.1)", 1.0)):
        V = np.load(tmp_path / init / "weights.npz")["final/V"]
        x = build_data(RunConfig.from_dict({"model": {"block": "res1", "depth": 128, "dim": 8, "init": init},
                                            "data": {"n": 12}}), torch.float64).x
        net = oc.ResNet.from_weights(block="res1", V=V, activation="tanh", beta=beta, dtype=torch.float64)
        want = heun_gain(net, x).numpy()
        for r in rows[init]:
            assert r["heun_gain"] == pytest.approx(want[r["member"]], rel=1e-12)
    assert max(r["heun_gain"] for r in rows["iid"]) < min(r["heun_gain"] for r in rows["smooth(0.1)"])
    res = runner.invoke(app, ["analyze", str(tmp_path), "--features"])
    assert res.exit_code == 2 and "config.toml and weights.npz" in res.output
    np.save(tmp_path / "bad.npy", np.zeros((3, 5)))
    res = runner.invoke(app, ["analyze", str(tmp_path / "iid"), "--features", "--inputs", str(tmp_path / "bad.npy")])
    assert res.exit_code == 2 and "--inputs '<shape (3, 5)>': expected an (n, 8) array" in res.output
    # the library names its argument; only the command line turns it into a flag
    from odecheck._errors import InvalidArgument
    from odecheck.analyze import feature_paths

    with pytest.raises(InvalidArgument, match=r"^inputs='<shape \(3, 5\)>': expected an \(n, 8\) array"):
        feature_paths(tmp_path / "iid", inputs=tmp_path / "bad.npy")


def test_out_writes_the_report_families_first(tmp_path):
    depths = (16, 24, 32, 48, 64, 96, 128, 192, 256)
    for L in depths:
        torch.save({"state_dict": _state_dict(L)}, tmp_path / f"resnet{L}.th")  # legacy names: read by content
    res = runner.invoke(app, ["analyze", *[str(tmp_path / f"resnet{L}.th") for L in depths], "--out",
                              str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert res.output.index("families across depths") < res.output.index("weight paths along depth")
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    (fam,) = rep["families"]
    assert fam["name"] == "layers.*.conv1.weight" and fam["depths"] == list(depths)
    assert fam["limit"] == "ode" and fam["limit_from"] == "max_normalized_increment"
    assert set(fam["statistics"]) == {"max_increment", "max_norm", "max_normalized_increment"}
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.index("## Families across depths") < md.index("## Paths, least regular first")
    assert "| `layers.*.conv1.weight` | 16, 24, 32" in md
    figs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    assert len([f for f in figs if f.startswith("family-")]) == 1 and len([f for f in figs if f.startswith("overview-")]) == 9


def test_python_entry_point_returns_dataframes(tmp_path):
    depths = (16, 24, 32, 48, 64, 96, 128, 192, 256)
    files = []
    for L in depths:
        torch.save(_state_dict(L), tmp_path / f"m{L}.pt")
        files.append(tmp_path / f"m{L}.pt")
    a = oc.analyze(files)
    assert set(a.families["statistic"]) == {"max_increment", "max_norm", "max_normalized_increment"}
    inc = a.families[a.families["statistic"] == "max_increment"].iloc[0]
    assert inc["family"] == "layers.*.conv1.weight" and inc["limit"] == "ode" and inc["family_limit"] == "ode"
    assert len(a.paths) == len(depths) and set(a.paths["regime"]) == {"ode"}
    assert a.report["families"][0]["limit"] == "ode"
    # the same numbers as the command line's JSON
    res = runner.invoke(app, ["analyze", *map(str, files), "--json", str(tmp_path / "a.json")])
    assert res.exit_code == 0, res.output
    cli = json.loads((tmp_path / "a.json").read_text())
    assert cli["families"][0]["statistics"]["max_increment"]["exponent"] == pytest.approx(inc["exponent"], rel=1e-12)
    with pytest.raises(oc.InvalidArgument, match="no such file"):
        oc.analyze(tmp_path / "missing.pt")


def test_a_family_limit_needs_three_depths_even_when_two_give_a_finite_interval():
    # four networks per depth, increments c / L with 5 % noise: at 2 depths the bootstrap over members gives a
    # finite interval around -1 (what `ode` would need), but one power law cannot be checked on two depths,
    # so the limit stays inconclusive; a third depth gives `ode`
    from odecheck.analyze import scaling_across_depths

    rng = np.random.default_rng(8)

    def rows(depths):
        return [{"name": "layers.w", "depth": L, "max_increment": 3.0 / L * np.exp(0.05 * rng.standard_normal()),
                 "max_norm": 1.0 + 0.01 * rng.standard_normal(), "max_normalized_increment": 1.0 / L}
                for L in depths for _ in range(4)]

    two = {r["statistic"]: r for r in scaling_across_depths(rows([16, 64]))}
    assert np.all(np.isfinite(two["max_increment"]["ci"])) and two["max_increment"]["ci"][1] < -0.75
    assert two["max_increment"]["limit"] == "inconclusive"
    three = {r["statistic"]: r for r in scaling_across_depths(rows([16, 32, 64]))}
    assert three["max_increment"]["limit"] == "ode"


def test_runs_of_a_stage_form_one_family_whatever_their_length():
    # CIFAR ResNets of 20-56 layers: layer2.*.conv1.weight runs [1:4], [1:6], [1:7], [1:9] (block 0 has another
    # shape) are one family across the four depths
    from odecheck.analyze import scaling_across_depths
    from odecheck.checkpoints import family_name

    assert family_name("layer2.*.conv1.weight[1:4]") == "layer2.*.conv1.weight[1:]"
    assert family_name("layer2.*.conv1.weight") == "layer2.*.conv1.weight"
    rng = np.random.default_rng(3)
    rows = [{"name": f"layer2.*.conv1.weight[1:{n}]", "depth": n - 1, "max_increment": 2.0 / (n - 1) * np.exp(0.05 * rng.standard_normal()),
             "max_norm": 1.0, "max_normalized_increment": 1.0 / (n - 1)} for n in (4, 6, 7, 9)]
    fams = {s["name"] for s in scaling_across_depths(rows)}
    assert fams == {"layer2.*.conv1.weight[1:]"}


def test_only_the_familys_own_limit_is_printed(tmp_path):
    # the raw increment's band is not the family's limit when a normalized increment exists: one "limit" a family
    import io

    from odecheck.analyze import families, scaling_across_depths
    from rich.console import Console

    from odecheck.presentation.render import print_analysis

    rng = np.random.default_rng(4)
    rows = [{"name": "layers.*.w", "depth": L, "max_increment": 2.0 * L ** -0.5 * np.exp(0.05 * rng.standard_normal()),
             "max_norm": 1.0 + 0.01 * rng.standard_normal(), "max_normalized_increment": L ** -1.0 * np.exp(0.05 * rng.standard_normal()),
             "file": "f", "hurst": 0.5, "hurst_ci": [0.4, 0.6], "regime": "sde", "increments": [], "norms": []}
            for L in (8, 16, 32, 64) for _ in range(3)]
    scaling = scaling_across_depths(rows)
    res = {"paths": rows, "scaling": scaling, "families": families(scaling), "skipped": [], "failed": []}
    buf = io.StringIO()
    print_analysis(res, Console(file=buf, width=200), all_paths=True)
    text = buf.getvalue()
    assert text.count("family limit") == 1 and "max_normalized_increment ~" in text
    assert [ln for ln in text.splitlines() if "family limit" in ln][0].startswith("layers.*.w: max_normalized_increment")
    assert res["families"][0]["limit"] == "ode" and "ode (from normalized)" in text  # -1 from the normalized one
    compact = io.StringIO()  # the compact terminal: the family's one row, no line per statistic
    print_analysis(res, Console(file=compact, width=200))
    text = compact.getvalue()
    assert "~ L^" not in text and text.count("layers.*.w") == 1 + len(rows)  # the family's row, the paths' rows
    assert "ode (from normalized)" in text and "sde (from" not in text  # the raw increment's band is not printed


def test_compact_terminal_counts_the_rest_and_folds_normalization_vectors(tmp_path):
    # 24 weight paths and 2 BatchNorm vectors over 12 blocks: the terminal shows the 20 least regular weight
    # paths, one line counting the other 4 and one folding the 2 norm vectors; --all-paths prints all 26
    from odecheck.presentation.render import SHOWN_PATHS

    rng = np.random.default_rng(0)
    sd = {}
    for k in range(12):
        for i in range(24):
            sd[f"layers.{k}.conv{i}.weight"] = torch.tensor(rng.standard_normal((3, 3)) + 0.1 * k)
        sd[f"layers.{k}.bn1.weight"] = torch.ones(3) + 0.01 * k
        sd[f"layers.{k}.bn1.bias"] = torch.zeros(3) + 0.01 * k
    torch.save(sd, tmp_path / "m.pt")
    res = runner.invoke(app, ["analyze", str(tmp_path / "m.pt"), "--json", str(tmp_path / "r.json")], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert SHOWN_PATHS == 20 and "4 more paths (" in res.output and "every one in --json and --out" in res.output
    assert "2 normalization vectors (BatchNorm/LayerNorm weights and biases) folded" in res.output
    assert "bn1." not in res.output and res.output.count("│ m.pt ") == 20
    assert len(json.loads((tmp_path / "r.json").read_text())["paths"]) == 26  # the JSON keeps every path
    full = runner.invoke(app, ["analyze", str(tmp_path / "m.pt"), "--all-paths"], terminal_width=200)
    assert full.exit_code == 0 and "bn1." in full.output and "more paths" not in full.output
    assert full.output.count("│ m.pt ") == 26 and "folded" not in full.output


def test_compact_terminal_folds_normalization_families_and_caps_left_out_lines(tmp_path):
    # three depths of a network with a conv weight, a BatchNorm vector pair and 12 kinds of BatchNorm buffers:
    # one family row (conv), one line folding the 2 normalization families, 10 left-out lines and one counting
    # the other 2 names; --all-paths prints the norm families and every left-out name
    rng = np.random.default_rng(2)
    files = []
    for L in (8, 12, 16):
        sd = {}
        for k in range(L):
            sd[f"layers.{k}.conv1.weight"] = torch.tensor(rng.standard_normal((4, 4)) / L + 0.1 * k / L)
            sd[f"layers.{k}.bn1.weight"] = torch.ones(4) + 0.01 * k
            sd[f"layers.{k}.bn1.bias"] = torch.zeros(4) + 0.01 * k
            for j in range(12):
                sd[f"layers.{k}.bn{j + 2}.running_mean"] = torch.zeros(4)
        torch.save(sd, tmp_path / f"m{L}.pt")
        files.append(str(tmp_path / f"m{L}.pt"))
    res = runner.invoke(app, ["analyze", *files, "--json", str(tmp_path / "r.json")], terminal_width=200)
    assert res.exit_code == 0, res.output
    fams = {f["name"] for f in json.loads((tmp_path / "r.json").read_text())["families"]}
    assert "~ L^" not in res.output
    assert fams == {"layers.*.conv1.weight", "layers.*.bn1.weight", "layers.*.bn1.bias"}
    assert "2 families of normalization vectors folded" in res.output and "layers.*.bn1.weight" not in res.output
    left = [ln for ln in res.output.splitlines() if ln.startswith("left out:")]
    assert len(left) == 11 and left[-1].startswith("left out: 72 more tensors under 2 more names")  # 2 names x 36 layers
    full = runner.invoke(app, ["analyze", *files, "--all-paths"], terminal_width=200)
    assert "layers.*.bn1.weight" in full.output and "folded" not in full.output
    assert len([ln for ln in full.output.splitlines() if ln.startswith("left out:")]) == 12
    scaling = json.loads((tmp_path / "r.json").read_text())["scaling"]
    assert full.output.count("~ L^") == len(scaling)  # one line per family and statistic
    conv = {s["statistic"] for s in scaling if s["name"] == "layers.*.conv1.weight"}
    assert conv == {"max_increment", "max_norm", "max_normalized_increment"}  # the weight family has all three


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_names_that_look_like_console_markup_or_hold_control_characters_print_in_one_line(tmp_path, fmt):
    # "[/]" and "[bold]" are console markup to rich (a name "[/]" raised MarkupError); a newline would split the
    # line: names are escaped where read (as checkpoints' already were) and markup-escaped where printed
    rng = np.random.default_rng(3)
    good = np.cumsum(rng.standard_normal((16, 30)), 0)
    if fmt == "npz":
        np.savez(tmp_path / "m.npz", **{"[bold]good[/]": good, "[/]": np.full((16, 30), np.nan), "line\nbreak": np.full(3, np.nan)})
        f = tmp_path / "m.npz"
    else:
        from safetensors.numpy import save_file

        save_file({f"[/].{k}.w": good[k].astype(np.float32) for k in range(16)} |
                  {f"b.{k}.[red]x\nz": np.zeros(4, np.int32) for k in range(2)}, tmp_path / "m.safetensors")
        f = tmp_path / "m.safetensors"
    res = runner.invoke(app, ["analyze", str(f), "--json", str(tmp_path / "r.json")], terminal_width=200)
    assert res.exit_code == 0 and "Traceback" not in res.output and "MarkupError" not in res.output, res.output
    out = json.loads((tmp_path / "r.json").read_text())
    name = out["paths"][0]["name"]
    assert name in ("[bold]good[/]", "[/].*.w") and name in res.output  # printed as written, not as markup
    lefts = [ln for ln in res.output.splitlines() if ln.startswith("left out:")]
    assert all("\n" not in s["name"] for s in out["skipped"]) and any("\\n" in ln for ln in lefts), lefts
