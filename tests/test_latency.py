"""Latency lookup tables: keys, the search space, the official table, build/predict/check (tools/latency.py)."""
import json
import math

import pytest
import yaml

from conftest import OFFICIAL_LATENCY_TABLE, ROOT, official_config, run_script
from src.arch import get_arch, spec_to_config
from src.errors import UserError
from src.flops import net_macs_params
from src.latency import (LatencyTable, conv_key, default_space, feature_mix_key, layers_to_build, logits_key,
                         make_divisible, mbconv_key, predict_latency, space_spec, spec_layers)

TOOL = ROOT / "tools" / "latency.py"

# ProxylessNAS-Mobile's choices placed in the official search space (stage-1 width 24, as searched; the
# released network widened that stage to 32): per cell (kernel, expand) or None for Zero.
MOBILE_CHOICES = [(5, 3), (3, 3), None, None, (7, 3), (3, 3), (5, 3), (5, 3), (7, 6), (5, 3), (5, 3), (5, 3),
                  (5, 6), (5, 3), (5, 3), (5, 3), (7, 6), (7, 6), (7, 3), (7, 3), (7, 6)]


def official_entries():
    return yaml.safe_load(OFFICIAL_LATENCY_TABLE.read_text())


def test_key_strings_are_the_official_ones():
    assert conv_key(224, 3, 32) == "Conv-input:224x224x3-output:112x112x32"
    assert mbconv_key(112, 16, 24, 3, 3, 2, False) == \
        "expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:3-stride:2-idskip:0"
    assert mbconv_key(14, 80, 80, 6.0, 7, 1, True) == \
        "expanded_conv-input:14x14x80-output:14x14x80-expand:6-kernel:7-stride:1-idskip:1"
    assert feature_mix_key(7, 320, 1280) == "Conv_1-input:7x7x320-output:7x7x1280"
    assert logits_key(7, 1280, 1000) == "Logits-input:7x7x1280-output:1000"
    # sizes follow the input: a 32 input gives 16x16 after the stem, 1x1 at the end
    assert conv_key(32, 3, 32) == "Conv-input:32x32x3-output:16x16x32"
    assert mbconv_key(1, 192, 320, 6, 7, 1, False).startswith("expanded_conv-input:1x1x192-output:1x1x320-")


def test_default_space_at_224_gives_exactly_the_official_keys():
    keys = [layer.key for layer in layers_to_build(224, space="default")]
    assert len(keys) == len(set(keys)) == 72
    assert set(keys) == set(official_entries())


def test_default_space_structure():
    space = default_space(224)
    assert (space.stem_channels, space.first_block_channels, space.head_channels) == (32, 16, 1280)
    assert len(space.cells) == 21
    assert [c.out_channels for c in space.cells] == [24] * 4 + [40] * 4 + [80] * 4 + [96] * 4 + [192] * 4 + [320]
    assert [c.stride for c in space.cells if c.stride != 1] == [2, 2, 2, 2]
    # Zero is offered exactly where the cell has stride 1 and keeps its width: 15 of the 21 cells
    assert [c.zero for c in space.cells].count(True) == 15
    assert all(c.zero == (c.stride == 1 and c.in_channels == c.out_channels) for c in space.cells)
    assert all(c.candidates == ((3, 3), (3, 6), (5, 3), (5, 6), (7, 3), (7, 6)) for c in space.cells)
    assert [c.in_size for c in space.cells][::4] == [112, 56, 28, 14, 14, 7]
    assert space.feature_size == 7
    assert default_space(32).feature_size == 1 and default_space(32).cells[0].in_size == 16


def test_width_mult_scales_as_the_official_supernet():
    # make_divisible(v, 8): nearest multiple of 8, at least 8, one step up if that lost more than 10%
    assert [make_divisible(v) for v in (4, 12, 33.6, 134.4, 268.8, 1792)] == [8, 16, 32, 136, 272, 1792]
    wide = default_space(224, width_mult=1.4)
    assert (wide.stem_channels, wide.first_block_channels, wide.head_channels) == (48, 24, 1792)
    assert [c.out_channels for c in wide.cells][::4] == [32, 56, 112, 136, 272, 448]
    narrow = default_space(224, width_mult=0.5)
    # the feature mix stays 1280 unless width_mult > 1 (official code)
    assert (narrow.stem_channels, narrow.first_block_channels, narrow.head_channels) == (16, 8, 1280)
    assert [c.out_channels for c in narrow.cells][::4] == [16, 24, 40, 48, 96, 160]


def test_predict_on_the_official_table_equals_the_hand_sum():
    table = LatencyTable.load(OFFICIAL_LATENCY_TABLE)
    assert table.image_size == 224 and table.meta == {} and len(table) == 72
    spec = space_spec(default_space(224), MOBILE_CHOICES)
    total, breakdown = predict_latency(table, spec, 224, 1000)
    lut = official_entries()
    e = "expanded_conv-input:"
    hand = [
        "Conv-input:224x224x3-output:112x112x32",
        e + "112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0",
        e + "112x112x16-output:56x56x24-expand:3-kernel:5-stride:2-idskip:0",
        e + "56x56x24-output:56x56x24-expand:3-kernel:3-stride:1-idskip:1",
        # two Zero cells: nothing
        e + "56x56x24-output:28x28x40-expand:3-kernel:7-stride:2-idskip:0",
        e + "28x28x40-output:28x28x40-expand:3-kernel:3-stride:1-idskip:1",
        e + "28x28x40-output:28x28x40-expand:3-kernel:5-stride:1-idskip:1",
        e + "28x28x40-output:28x28x40-expand:3-kernel:5-stride:1-idskip:1",
        e + "28x28x40-output:14x14x80-expand:6-kernel:7-stride:2-idskip:0",
        e + "14x14x80-output:14x14x80-expand:3-kernel:5-stride:1-idskip:1",
        e + "14x14x80-output:14x14x80-expand:3-kernel:5-stride:1-idskip:1",
        e + "14x14x80-output:14x14x80-expand:3-kernel:5-stride:1-idskip:1",
        e + "14x14x80-output:14x14x96-expand:6-kernel:5-stride:1-idskip:0",
        e + "14x14x96-output:14x14x96-expand:3-kernel:5-stride:1-idskip:1",
        e + "14x14x96-output:14x14x96-expand:3-kernel:5-stride:1-idskip:1",
        e + "14x14x96-output:14x14x96-expand:3-kernel:5-stride:1-idskip:1",
        e + "14x14x96-output:7x7x192-expand:6-kernel:7-stride:2-idskip:0",
        e + "7x7x192-output:7x7x192-expand:6-kernel:7-stride:1-idskip:1",
        e + "7x7x192-output:7x7x192-expand:3-kernel:7-stride:1-idskip:1",
        e + "7x7x192-output:7x7x192-expand:3-kernel:7-stride:1-idskip:1",
        e + "7x7x192-output:7x7x320-expand:6-kernel:7-stride:1-idskip:0",
        "Conv_1-input:7x7x320-output:7x7x1280",
        "Logits-input:7x7x1280-output:1000",
    ]
    assert [key for key, _ in breakdown] == hand
    assert total == pytest.approx(math.fsum(lut[k]["mean"] for k in hand), rel=1e-12)
    assert 60 < total < 120  # the paper's Pixel 1 networks run around 80 ms


def test_predict_cli_on_the_official_table_with_a_searched_config(tmp_path):
    config = tmp_path / "searched.config"
    config.write_text(json.dumps(spec_to_config(space_spec(default_space(224), MOBILE_CHOICES))))
    table = LatencyTable.load(OFFICIAL_LATENCY_TABLE)
    expected, _ = predict_latency(table, space_spec(default_space(224), MOBILE_CHOICES), 224, 1000)
    result = run_script([TOOL, "predict", "--table", OFFICIAL_LATENCY_TABLE, "--arch", config])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"predicted latency: {expected:.3f} ms"
    macs, params = net_macs_params(space_spec(default_space(224), MOBILE_CHOICES), 224, 1000)
    assert f"{params:,} parameters, {macs / 1e6:.1f} M MACs at 224x224" in result.stdout


def test_missing_key_names_the_key_and_the_build_command():
    table = LatencyTable.load(OFFICIAL_LATENCY_TABLE)
    # the released Mobile widened stage 1 to 32 channels: the official table (the search space) lacks it
    with pytest.raises(UserError) as err:
        predict_latency(table, get_arch("proxylessnas_mobile"), 224, 1000)
    assert str(err.value) == (
        f"latency table {OFFICIAL_LATENCY_TABLE} has no entry "
        "'expanded_conv-input:112x112x16-output:56x56x32-expand:3-kernel:5-stride:2-idskip:0': measure it with "
        "`python tools/latency.py build --runtime onnxruntime --image_size 224 --arch proxylessnas_mobile "
        "--output NEW_TABLE.yaml`")
    with pytest.raises(UserError, match=r"no entry 'Conv-input:64x64x3-output:32x32x32'.*--image_size 224"):
        table.mean(conv_key(64, 3, 32))


def test_table_round_trip_keeps_entries_and_meta(tmp_path):
    table = LatencyTable.load(OFFICIAL_LATENCY_TABLE)
    table.meta = {"runtime": "onnxruntime", "image_size": 224, "call_overhead_ms": 0.25}
    path = table.save(tmp_path / "t.yaml")
    again = LatencyTable.load(path)
    assert again.entries == table.entries and again.meta == table.meta
    # the official reader (yaml + lut[key]['mean']) still works: _meta is just one more record
    raw = yaml.safe_load(path.read_text())
    assert raw["Conv_1-input:7x7x320-output:7x7x1280"]["mean"] == official_entries()[
        "Conv_1-input:7x7x320-output:7x7x1280"]["mean"]
    with pytest.raises(UserError, match="exists: pass --overwrite"):
        table.save(path)
    # the recorded per-call overhead is added once per network, not once per layer
    spec = space_spec(default_space(224), MOBILE_CHOICES)
    with_overhead, breakdown = predict_latency(again, spec, 224, 1000)
    without, _ = predict_latency(LatencyTable.load(OFFICIAL_LATENCY_TABLE), spec, 224, 1000)
    assert with_overhead == pytest.approx(without + 0.25) and breakdown[-1][1] == 0.25


def test_released_space_and_one_arch_list_their_layers():
    released = layers_to_build(224, space="released")
    keys = {layer.key for layer in released}
    for name in ("proxylessnas_mobile", "proxylessnas_mobile_14", "proxylessnas_cpu", "proxylessnas_gpu"):
        assert {layer.key for layer in spec_layers(get_arch(name), 224)} <= keys
    mobile = layers_to_build(32, arch=str(official_config("proxylessnas_mobile")))
    in_order = [layer.key for layer in spec_layers(get_arch("proxylessnas_mobile"), 32)]
    assert len(in_order) == 1 + 20 + 2  # stem, 20 non-Zero blocks, feature mix, logits
    assert [layer.key for layer in mobile] == list(dict.fromkeys(in_order))  # each distinct layer once
    assert len(mobile) == 17


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    """A real ONNX Runtime build of ProxylessNAS-Mobile's layers at 32x32 (few runs: this tests the plumbing)."""
    path = tmp_path_factory.mktemp("latency") / "ort_32.yaml"
    result = run_script([TOOL, "build", "--runtime", "onnxruntime", "--threads", "1", "--image_size", "32",
                         "--arch", "proxylessnas_mobile", "--output", path, "--warmup", "2", "--runs", "5"])
    assert result.returncode == 0, result.stderr
    return path, result


def test_tiny_build_is_written_reloaded_and_predicted(tiny_table):
    path, result = tiny_table
    assert "proxylessnas_mobile: 4,080,512 parameters" in result.stdout
    assert "ETA" in result.stdout  # progress per layer and per network
    table = LatencyTable.load(path)
    spec = get_arch("proxylessnas_mobile")
    layers = spec_layers(spec, 32)
    # the default (context) order: the layers only, timed inside the network they make; no joins to subtract
    assert set(table.entries) == {layer.key for layer in layers} and not table.has_boundaries
    assert result.stdout.strip().splitlines()[-1].startswith(f"wrote {path}: 17 entries (onnx")
    assert all(record["count"] == 5 * sum(layer.key == key for layer in layers) and record["mean"] > 0
               and record["var"] >= 0 for key, record in table.entries.items())  # 5 runs each time it runs
    meta = table.meta
    assert (meta["runtime"], meta["threads"], meta["batch"], meta["image_size"]) == ("onnxruntime", 1, 1, 32)
    assert meta["runtime_version"] and meta["cpu"] and "date" in meta and meta["call_overhead_ms"] >= 0
    assert table.image_size == 32 and meta["order"] == "context"  # the default
    # nearly every node's time belongs to a named layer (the rest, runtime-inserted reorders, is shared out)
    assert 0.9 <= meta["profile_named_share"] <= 1.0
    total, breakdown = predict_latency(table, spec, 32, 1000)
    per_layer = [table.entries[layer.key]["mean"] for layer in layers]  # repeated blocks count again
    assert total == pytest.approx(math.fsum(per_layer) + meta["call_overhead_ms"])
    assert len(breakdown) == 23 + 1 and breakdown[-1][0].startswith("call overhead")
    # the network the layers were timed in is predicted as exactly its measured time: its time was split
    assert list(meta["contexts_ms"]) == ["proxylessnas_mobile"]
    assert total == pytest.approx(meta["contexts_ms"]["proxylessnas_mobile"], rel=1e-4)
    predicted = run_script([TOOL, "predict", "--table", path, "--arch", "proxylessnas_mobile"])
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.strip().splitlines()[-1] == f"predicted latency: {total:.3f} ms"


def test_context_networks_run_every_layer_of_the_space():
    """--space default: one network per candidate (and per first-block kernel of the official table) contains
    every layer of the space, the official 72 keys at 224; every network hands each layer's output on to the
    next layer's input; --space released and --arch are the networks themselves."""
    from src.latency import context_chains

    for size in (224, 32):
        chains = context_chains(size, "default")
        assert len(chains) == 6
        keys = {layer.key for _, chain in chains for layer in chain}
        assert keys == {layer.key for layer in layers_to_build(size, "default")}
        for name, chain in chains:
            assert (chain[0].in_size, chain[0].in_channels) == (size, 3) and chain[-1].kind == "logits"
            assert all(a.output == (b.in_size, b.in_channels) for a, b in zip(chain, chain[1:])), name
            assert len(chain) == 1 + 1 + 21 + 2  # no Zero: every cell takes the same MBConv
    assert set(official_entries()) == {layer.key for _, chain in context_chains(224, "default") for layer in chain}
    released = context_chains(32, "released")
    assert [name for name, _ in released] == sorted(n for n in ("proxylessnas_mobile", "proxylessnas_mobile_14",
                                                               "proxylessnas_cpu", "proxylessnas_gpu"))
    assert [layer.key for layer in released[1][1]] == [layer.key for layer in spec_layers(get_arch(released[1][0]), 32)]


def test_chained_model_computes_its_layers_one_after_another(tmp_path):
    """chain_model joins separately exported layers into one ONNX model that gives what running them one by one
    gives, with every node named after its layer (what the profile split relies on)."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from src.latency import _Timer, chain_model, layer_cell

    picked = spec_layers(get_arch("proxylessnas_mobile"), 32)  # the whole network, layer by layer
    timer = _Timer("onnxruntime", 1, 1, 1)
    try:
        models = [timer.export_onnx(layer_cell(layer), layer.input_shape) for layer in picked]
    finally:
        timer.close()
    chain = chain_model(models)
    onnx.checker.check_model(chain)
    assert [sum(node.name.startswith(f"L{i}/") for node in chain.graph.node) for i in range(len(models))] == \
        [len(model.graph.node) for model in models]
    assert len(chain.graph.node) == sum(len(model.graph.node) for model in models)
    x = np.random.default_rng(1).standard_normal(picked[0].input_shape).astype(np.float32)
    step = x
    for model in models:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        step = session.run(None, {session.get_inputs()[0].name: step})[0]
    whole = ort.InferenceSession(chain.SerializeToString(), providers=["CPUExecutionProvider"])
    out = whole.run(None, {whole.get_inputs()[0].name: x})[0]
    assert out.shape == (1, 1000)
    np.testing.assert_allclose(out, step, rtol=1e-4, atol=1e-5)


def meta_boundaries(table):
    return table.meta["boundaries"]


def test_search_cost_of_a_network_equals_predict_with_its_joins():
    """The search's cost model and predict agree on every network of the space, Zero cells included: a Zero
    cell costs nothing, not even the join after it (its neighbours join directly)."""
    import numpy as np

    from src.latency import boundary_key
    from src.nas.cost import latency_model

    space = default_space(32, width_mult=0.5, num_classes=10)
    rng = np.random.default_rng(0)
    keys = [layer.key for layer in layers_to_build(32, "default", num_classes=10, width_mult=0.5)]
    keys += list(space.fixed_boundaries().values()) + [cell.boundary for cell in space.cells]
    assert boundary_key(16, space.stem_channels) in keys
    table = LatencyTable({k: {"count": 5, "mean": float(rng.uniform(0.01, 1.0)), "var": 0.0} for k in keys},
                         {"image_size": 32, "call_overhead_ms": 0.05})
    model = latency_model(space, table)
    for trial in range(6):
        choices = [int(rng.integers(len(cell.op_names))) for cell in space.cells]
        if trial == 0:  # every Zero the space allows
            choices = [len(cell.op_names) - 1 if cell.zero else 0 for cell in space.cells]
        predicted, _ = predict_latency(table, space.spec(choices), 32, 10)
        assert model.of_choices(choices) == pytest.approx(predicted, rel=1e-9)


def test_check_prints_predicted_measured_and_ratio(tiny_table):
    path, _ = tiny_table
    result = run_script([TOOL, "check", "--table", path, "--arch", "proxylessnas_mobile", "--runtime", "onnxruntime",
                         "--threads", "1", "--warmup", "2", "--runs", "5"])
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    words = last.replace(",", "").split()
    predicted, measured, ratio = float(words[1]), float(words[4]), float(words[-1])
    assert words[0] == "predicted" and words[3] == "measured" and "(onnxruntime threads 1)" in last.replace(",", "")
    assert ratio == pytest.approx(predicted / measured, abs=2e-3)
    assert predicted == pytest.approx(predict_latency(LatencyTable.load(path), get_arch("proxylessnas_mobile"),
                                                      32, 1000)[0], abs=1e-3)
    assert measured > 0


def one_line_error(result, *fragments):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_input_is_one_line_and_exit_2(tiny_table, tmp_path):
    path, _ = tiny_table
    one_line_error(run_script([TOOL, "build", "--runtime", "tensorflow", "--image_size", "32", "--output",
                               tmp_path / "x.yaml"]), "unknown runtime 'tensorflow'", "onnxruntime, mindspore")
    one_line_error(run_script([TOOL, "predict", "--table", tmp_path / "none.yaml", "--arch", "proxylessnas_mobile"]),
                   "latency table not found", "tools/latency.py build")
    one_line_error(run_script([TOOL, "predict", "--table", path, "--arch", "proxylessnas_mobile", "--image_size",
                               "224"]), "measured at image size 32, not 224", "--image_size 32")
    one_line_error(run_script([TOOL, "predict", "--table", path, "--arch", "mobile_v9"]), "unknown arch 'mobile_v9'")
    one_line_error(run_script([TOOL, "build", "--runtime", "onnxruntime", "--threads", "0", "--image_size", "32",
                               "--output", tmp_path / "x.yaml"]), "--threads must be a positive integer")
    one_line_error(run_script([TOOL, "build", "--runtime", "onnxruntime", "--image_size", "32", "--space", "tiny",
                               "--output", tmp_path / "x.yaml"]), "unknown --space 'tiny'")
    one_line_error(run_script([TOOL, "build", "--runtime", "onnxruntime", "--image_size", "32", "--order", "sideways",
                               "--output", tmp_path / "x.yaml"]), "unknown order 'sideways'")
    one_line_error(run_script([TOOL, "build", "--image_size", "32"]), "required: --runtime, --output")
    assert not (tmp_path / "x.yaml").exists()
    before = path.read_bytes()
    one_line_error(run_script([TOOL, "build", "--runtime", "onnxruntime", "--image_size", "32", "--arch",
                               "proxylessnas_mobile", "--output", path]), "exists: pass --overwrite")
    assert path.read_bytes() == before
    broken = tmp_path / "broken.yaml"
    broken.write_text("Conv-input:32x32x3-output:16x16x32: {count: 5}\n")
    one_line_error(run_script([TOOL, "predict", "--table", broken, "--arch", "proxylessnas_mobile"]),
                   "has no numeric 'mean'")


@pytest.mark.parametrize("variant", ["proxylessnas_mobile", "proxylessnas_mobile_14", "proxylessnas_cpu",
                                     "proxylessnas_gpu"])
def test_flops_match_a_counted_forward_pass_of_the_official_config(variant):
    """src/flops.py against multiply-adds counted on an independent PyTorch build of the released config."""
    torch = pytest.importorskip("torch", reason="needs torch for the independent reference network")
    torch_reference = pytest.importorskip("torch_reference")
    model = torch_reference.build(official_config(variant), seed=0).eval()
    counted = []

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            counted.append(output.numel() * k * module.in_channels // module.groups)
        elif isinstance(module, torch.nn.Linear):
            counted.append(module.in_features * module.out_features)

    for module in model.modules():
        module.register_forward_hook(count)
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert net_macs_params(get_arch(variant), 224, 1000) == (sum(counted), params)
    if variant == "proxylessnas_mobile":  # the paper: 320 M multiply-adds, 4.08 M parameters
        assert round(sum(counted) / 1e6) == 320 and params == 4_080_512


def test_mindspore_build_splits_the_network_time_by_the_layers_times(tmp_path):
    """MindSpore has no per-node profile: a context table splits the network's GRAPH-mode time by the layers'
    own times in rotation, so the network is predicted as its measured time and each layer keeps its share."""
    from src.latency import build_table

    table = build_table("mindspore", 32, arch="proxylessnas_gpu", warmup=1, runs=3, progress=False)
    layers = spec_layers(get_arch("proxylessnas_gpu"), 32)
    assert table.meta["order"] == "context" and set(table.entries) == {layer.key for layer in layers}
    assert all(record["mean"] > 0 for record in table.entries.values())
    total, _ = predict_latency(table, get_arch("proxylessnas_gpu"), 32, 1000)
    assert total == pytest.approx(table.meta["contexts_ms"]["proxylessnas_gpu"], rel=1e-4)


def test_build_in_process_keeps_the_callers_mode(tmp_path):
    """The search calls build_table from a PyNative process: it gets its mode back; sequential order works."""
    import mindspore as ms
    from src.latency import build_table

    ms.set_context(mode=ms.PYNATIVE_MODE)
    table = build_table("onnxruntime", 32, arch="proxylessnas_gpu", threads=1, warmup=1, runs=3,
                        order="sequential", progress=False)
    assert ms.get_context("mode") == ms.PYNATIVE_MODE
    assert table.meta["order"] == "sequential" and table.meta["space"] == "proxylessnas_gpu"
    layers = spec_layers(get_arch("proxylessnas_gpu"), 32)
    assert set(table.entries) == {layer.key for layer in layers} | {layer.boundary for layer in layers[:-1]}
    # without the joins: the official kind of table, predicted as the plain sum
    plain = build_table("onnxruntime", 32, arch="proxylessnas_gpu", threads=1, warmup=1, runs=3, progress=False,
                        order="rotation", joins=False)
    assert set(plain.entries) == {layer.key for layer in layers} and not plain.has_boundaries
    total, breakdown = predict_latency(plain, get_arch("proxylessnas_gpu"), 32, 1000)
    assert total == pytest.approx(math.fsum(plain.entries[layer.key]["mean"] for layer in layers)
                                  + plain.call_overhead_ms)
    path = table.save(tmp_path / "gpu.yaml")
    assert LatencyTable.load(path).entries == table.entries
