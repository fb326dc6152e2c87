"""benchmarks/run.py: runs end to end in --quick mode and writes well-formed JSON and markdown.

Only structure and positivity are checked: speed is judged on the benchmark's own output, never here.
"""
import json
import sys

import pytest

from conftest import ROOT, default_depthwise_kernel, run_script

sys.path.insert(0, str(ROOT))
from benchmarks import run as bench  # noqa: E402

INFER_ROWS = {"infer_entry": ("entry_many",), "infer_entry_one": ("entry_one",),
              "infer_mindspore": ("plain", "folded_builtin", "plain_builtin"),
              "infer_mindir": ("folded", "plain"),
              "infer_onnxruntime": ("folded", "plain", "int8_qdq", "int8_qoperator"), "infer_torch": ("eager",),
              "infer_torch_capped": ("eager",)}


def _positive_timing(node):
    assert node["median_ms"] > 0 and node["p90_ms"] >= node["median_ms"] and node["first_call_s"] > 0


@pytest.mark.slow
def test_quick_run_writes_json_and_markdown(tmp_path):
    run = run_script(["benchmarks/run.py", "--quick", "--out", tmp_path, "--name", "quick"], timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "quick.json").read_text())
    assert results["machine"]["cores"] >= 1 and results["machine"]["versions"]["mindspore"]
    assert len(results["load_average_before"]) == 3 and len(results["load_average_after"]) == 3
    sections = results["sections"]
    assert set(sections) == set(bench.SECTIONS)
    for name, node in sections.items():
        assert "failed" not in node, f"{name}: {node.get('failed')}"
    for name, kinds in INFER_ROWS.items():
        if "skipped" in sections[name]:
            continue
        if name == "infer_mindspore" and default_depthwise_kernel() == "builtin":  # no compiler: said, not run
            assert sections[name]["native_skipped"].startswith("no C++ compiler")
            kinds = tuple(k for k in kinds if k != "plain")
        for kind in kinds:
            _positive_timing(sections[name][kind]["batch1"])
            assert sections[name][kind]["batchN"]["img_per_s"] > 0
    # the MindSpore rows run the entry point's own mode choice, and the process really was in that mode
    from src.predict import GRAPH_MIN_IMAGES, checkpoint_mode
    infer, one = sections["infer_entry"], sections["infer_entry_one"]
    assert infer["entry_many_mode"] == infer["entry_many_context_mode"] == checkpoint_mode(GRAPH_MIN_IMAGES) == "GRAPH"
    assert one["entry_one_mode"] == one["entry_one_context_mode"] == checkpoint_mode(1) == "PYNATIVE"
    assert results["machine"]["cpu_flags"] and results["machine"]["native_kernel_isa"] in ("avx512", "avx2", "generic")
    assert sections["train_mindspore"]["depthwise_kernel"] == default_depthwise_kernel()
    # the entry points' own oneDNN setting: lifted only where the native kernels run on an AVX-512 CPU
    lifted = "lifted" if default_depthwise_kernel() == "native" and "avx512f" in results["machine"]["cpu_flags"] \
        else "AVX2"
    assert infer["onednn_isa"] == sections["train_mindspore"]["onednn_isa"] == lifted
    assert one["onednn_isa"] == "AVX2"  # PyNative keeps the cap
    assert sections["infer_mindspore"]["onednn_isa"] == sections["train_mindspore_builtin"]["onednn_isa"] == "AVX2"
    assert sections["train_mindspore_builtin"]["depthwise_kernel"] == "builtin"
    for name in ("train_mindspore", "train_mindspore_builtin", "train_torch"):
        if "skipped" not in sections[name]:
            _positive_timing(sections[name])
            assert sections[name]["img_per_s"] > 0 and sections[name]["peak_rss_mb"] > 0
    for key in ("train_w1", "train_w2", "eval_w1", "eval_w2"):
        assert sections["data"][key]["img_per_s"] > 0
    # same weights everywhere: every runner's logits agree with PyTorch's
    if "skipped" not in sections["infer_torch_capped"]:  # the worker really ran under MindSpore's cap
        assert sections["infer_torch_capped"]["isa_cap"] == {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    if "skipped" not in sections["infer_torch"]:
        rel = results["logits_vs_torch_rel"]
        assert rel and max(v for k, v in rel.items() if "int8" not in k) < 1e-3
        # INT8 is not float-exact, but it is the same network (random weights, synthetic calibration)
        assert rel["onnxruntime_int8_qdq"] < 1.5 and rel["onnxruntime_int8_qoperator"] < 1.5
    markdown = (tmp_path / "quick.md").read_text()
    assert markdown == bench.markdown_report(results)
    assert f"| MindSpore GRAPH, this project ({default_depthwise_kernel()} depthwise kernel, oneDNN " in markdown
    assert "| PyTorch eager (eval, no_grad) |" in markdown
    assert "INT8 QDQ vs FP32 ONNX (BN folded): batch 1" in markdown
    assert sections["export"]["onnx_int8_qdq_b2"]["calibration_images"] == 8
    # --quick runs two alternating rounds of the batch-1 comparison; round 1 is the pass above
    ran = {s for s in bench.ROUND_SECTIONS if "skipped" not in sections[s]}
    assert set(results["rounds"]) == ran and all(len(r) == 2 for r in results["rounds"].values())
    assert results["rounds"]["infer_entry"][0]["entry_many"] == sections["infer_entry"]["entry_many"]["batch1"]["median_ms"]
    assert "## Batch 1 in 2 alternating rounds" in markdown
    assert run.stdout.strip().splitlines()[-1] == f"wrote {tmp_path / 'quick.json'}, {tmp_path / 'quick.md'}"


def fake_results(skipped=()):
    timing = {"first_call_s": 1.0, "median_ms": 10.0, "p90_ms": 12.0, "mean_ms": 10.5, "iters": 4}
    infer = {"batch1": timing, "batchN": {**timing, "batch": 8, "img_per_s": 800.0}}
    sections = {
        "train_mindspore": {**timing, "img_per_s": 30.0, "peak_rss_mb": 900.0, "batch": 8,
                            "depthwise_kernel": "native", "onednn_isa": "AVX2"},
        "train_mindspore_builtin": {**timing, "img_per_s": 12.0, "peak_rss_mb": 900.0, "batch": 8,
                                    "depthwise_kernel": "builtin"},
        "train_torch": {**timing, "img_per_s": 15.0, "peak_rss_mb": 700.0, "batch": 8},
        "infer_entry": {"entry_many": infer, "entry_many_mode": "GRAPH", "kernel_isa": "avx512", "onednn_isa": "AVX2"},
        "infer_entry_one": {"entry_one": infer, "entry_one_mode": "PYNATIVE", "kernel_isa": "avx512",
                            "onednn_isa": "AVX2"},
        "infer_mindspore": {"plain": infer, "folded_builtin": infer, "plain_builtin": infer, "kernel_isa": "avx512",
                            "onednn_isa": "AVX2"},
        "infer_mindir": {"folded": infer, "plain": infer},
        "infer_onnxruntime": {"folded": infer, "plain": infer,
                              "int8_qdq": {"batch1": {**timing, "median_ms": 5.0},
                                           "batchN": {**timing, "batch": 8, "img_per_s": 1600.0}}},
        "infer_torch": {"eager": infer},
        "infer_torch_capped": {"eager": {"batch1": {**timing, "median_ms": 20.0},
                                         "batchN": {**timing, "batch": 8, "img_per_s": 400.0}}},
        "data": {"images": 8, "jpeg_size": [500, 375], **{f"{s}_w{w}": {"img_per_s": 50.0}
                                                          for s in ("train", "eval") for w in (1, 2)}},
    }
    for name in skipped:
        sections[name] = {"skipped": "torch not installed (pip install torch)"}
    settings = dict(arch="proxylessnas_mobile", batch=8, image_size=64, isa="AVX2", jit_level="", threads=0,
                    graph_kernel=False, quick=False)
    return {"date": "2024-01-01", "machine": {"cpu": "test cpu", "cores": 2, "versions": {"mindspore": "2.10.0"},
                                              "cpu_flags": ["avx2", "fma", "avx512f"]},
            "settings": settings, "load_average_before": [0.1, 0.1, 0.1], "load_average_after": [0.2, 0.2, 0.2],
            "sections": sections, "logits_vs_torch_rel": {"mindspore_entry_many": 1e-5}}


def test_markdown_ratios_against_pytorch():
    markdown = bench.markdown_report(fake_results())
    assert "| MindSpore GRAPH, this project (native depthwise kernel, oneDNN capped at AVX2) | 30.0 | 2.00x |" in markdown
    assert "| MindSpore GRAPH, MindSpore's Conv2D for depthwise | 12.0 | 0.80x |" in markdown
    assert "| PyTorch eager | 15.0 | 1.00x |" in markdown
    assert ("| predict.py / eval.py, .ckpt, many images: GRAPH, BN folded, native kernels, oneDNN capped at AVX2 | "
            "10.00 | 12.00 | 1.00x | "
            "800.0 | 1.00x | 1.00 | 1.0e-05 |") in markdown
    assert "| predict.py, .ckpt, one image: PYNATIVE, BN folded, native kernels, oneDNN capped at AVX2 | 10.00 |" in markdown
    assert "test cpu, 2 cores" in markdown
    assert "- CPU flags: avx2 fma avx512f; native kernels (depthwise, first layer) built for avx512" in markdown
    assert "| ONNX Runtime INT8 (export.py --quantize int8, QDQ), BN folded | 5.00 | 12.00 | 2.00x | 1600.0 | 2.00x |" in markdown
    assert "INT8 QDQ vs FP32 ONNX (BN folded): batch 1 2.00x, batch 8 2.00x" in markdown
    assert "| ONNX Runtime INT8 (--quantize_format QOperator), BN folded | skipped:" in markdown
    assert ("| PyTorch eager, capped at AVX2 as MindSpore is (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY) | 20.00 | 12.00 "
            "| 0.50x |") in markdown
    assert "predict.py / eval.py (GRAPH) vs PyTorch held to the same ISA (AVX2): batch 1 2.00x, batch 8 2.00x" in markdown


def test_markdown_says_when_the_entry_points_ran_without_the_cap():
    results = fake_results()
    results["sections"]["infer_entry"]["onednn_isa"] = "lifted"
    results["sections"]["train_mindspore"]["onednn_isa"] = "lifted"
    markdown = bench.markdown_report(results)
    uncapped = "oneDNN uncapped (native kernels cover its slow convolutions)"
    assert f"| predict.py / eval.py, .ckpt, many images: GRAPH, BN folded, native kernels, {uncapped} | 10.00 |" in markdown
    assert f"| MindSpore GRAPH, this project (native depthwise kernel, {uncapped}) | 30.0 |" in markdown
    assert "held to the same ISA" not in markdown  # PyTorch's capped row is no like-for-like comparison then


def test_rounds_table_gives_per_round_ratios_and_the_ratio_of_medians():
    results = fake_results()
    results["rounds"] = {"infer_entry": [{"entry_many": 10.0}, {"entry_many": 20.0}, {"entry_many": 12.0}],
                         "infer_entry_one": [{"entry_one": 30.0}, {"entry_one": 30.0}, {"entry_one": 30.0}],
                         "infer_torch": [{"eager": 15.0}, {"eager": 30.0}, {"eager": 12.0}]}
    summary = bench.round_summary(results)
    assert summary["infer_entry/entry_many"]["median_ms"] == 12.0
    assert summary["infer_entry/entry_many"]["x_torch"] == pytest.approx([1.5, 1.5, 1.0])
    assert summary["infer_entry/entry_many"]["x_torch_of_medians"] == pytest.approx(15.0 / 12.0)
    markdown = bench.markdown_report(results)
    assert "## Batch 1 in 3 alternating rounds" in markdown
    assert "| predict.py / eval.py, many images (GRAPH) | 10.00, 20.00, 12.00 | 12.00 | 1.50x, 1.50x, 1.00x | 1.25x |" in markdown
    assert "| PyTorch eager | 15.00, 30.00, 12.00 | 15.00 | 1.00x, 1.00x, 1.00x | 1.00x |" in markdown
    assert "| predict.py, one image (PYNATIVE) | 30.00, 30.00, 30.00 | 30.00 | 0.50x, 1.00x, 0.40x | 0.50x |" in markdown
    # a runner that failed in one round has no row; --rounds must be positive
    results["rounds"]["infer_entry"][1] = {}
    assert "infer_entry/entry_many" not in bench.round_summary(results)
    with pytest.raises(SystemExit):
        bench.parse_args(["--rounds", "0"])


def test_missing_competitor_is_skipped_and_said(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "_installed", lambda module: module != "torch")
    args = bench.parse_args(["--quick"])
    assert bench.run_section("train_torch", args, tmp_path) == {
        "skipped": "torch not installed (pip install torch)"}
    markdown = bench.markdown_report(fake_results(skipped=("train_torch", "infer_torch")))
    assert "| PyTorch eager | skipped: torch not installed (pip install torch) |" in markdown
    assert "| MindSpore GRAPH, this project (native depthwise kernel, oneDNN capped at AVX2) | 30.0 | - |" in markdown


def test_native_kernel_unavailable_is_said_in_the_inference_table():
    results = fake_results()
    del results["sections"]["infer_mindspore"]["plain"]
    results["sections"]["infer_mindspore"]["native_skipped"] = "no C++ compiler 'g++' on PATH"
    markdown = bench.markdown_report(results)
    assert ("| lab: MindSpore GRAPH, BN not folded, native kernels, oneDNN capped at AVX2 | skipped: no C++ compiler "
            "'g++' on PATH |"
            in markdown)
    assert "| lab: MindSpore GRAPH, BN folded, MindSpore's Conv2D | 10.00 |" in markdown


def test_competitors_run_at_their_own_defaults_mindspore_keeps_its_cap(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # as tests/conftest.py sets it: must not leak to PyTorch
    args = bench.parse_args(["--quick"])
    for section in ("infer_torch", "train_torch", "infer_onnxruntime"):
        assert "ONEDNN_MAX_CPU_ISA" not in bench.worker_env(args, section), section
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx512")
    assert "ATEN_CPU_CAPABILITY" not in bench.worker_env(args, "infer_torch")
    capped = bench.worker_env(args, "infer_torch_capped")
    assert (capped["ONEDNN_MAX_CPU_ISA"], capped["ATEN_CPU_CAPABILITY"]) == ("AVX2", "avx2")
    for section in ("infer_mindspore", "infer_mindir", "train_mindspore_builtin"):
        assert bench.worker_env(args, section)["ONEDNN_MAX_CPU_ISA"] == "AVX2", section
    # the entry points and the project's training step make their own environment, as for a user
    monkeypatch.setenv("PROXYLESSNAS_ONEDNN_CAP", "AVX2")
    for section in ("infer_entry", "infer_entry_one", "train_mindspore"):
        env = bench.worker_env(args, section)
        assert "ONEDNN_MAX_CPU_ISA" not in env and "PROXYLESSNAS_ONEDNN_CAP" not in env, section
    # --isa default: no cap, said explicitly (unset, the worker's own setup would cap it at AVX2)
    assert bench.worker_env(bench.parse_args(["--isa", "default"]), "infer_mindspore")["ONEDNN_MAX_CPU_ISA"] == "ALL"


def test_arguments_are_checked():
    with pytest.raises(SystemExit):
        bench.parse_args(["--sections", "train_mindspore,nonsense"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--image_size", "100"])
    args = bench.parse_args(["--sections", "infer_onnxruntime"])
    assert args.sections == {"infer_onnxruntime", "export", "weights"}


def test_call_path_benchmark_times_both_paths_with_the_runner_direct(tmp_path):
    """benchmarks/call_path.py (README, Performance): both call paths timed, the runner on its direct path."""
    run = run_script(["benchmarks/call_path.py", "--blocks", "2", "--calls", "3", "--image_size", "32",
                      "--out", tmp_path], timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    text = (tmp_path / "call_path.md").read_text()
    assert "runner on the direct path: True" in text
    rows = [line for line in text.splitlines() if line.startswith("| net(x)") or line.startswith("| graph_runner")]
    assert len(rows) == 2
    medians = [float(row.split("|")[3]) for row in rows]
    assert all(m > 0 for m in medians)
    ratio = float(text.split("graph_runner / net(x): ")[1].split()[0])
    assert ratio == pytest.approx(medians[1] / medians[0], abs=2e-3)


@pytest.mark.slow
def test_latency_check_runs_every_setup_and_reports_the_ratios(tmp_path):
    """benchmarks/latency_check.py (README, Latency on your device) at a tiny size: every setup built and its
    networks predicted and measured; the report's ratios are predicted / mean of the two readings; the markdown
    can be rewritten from the JSON alone."""
    run = run_script(["benchmarks/latency_check.py", "--image_size", "32", "--warmup", "1", "--runs", "3",
                      "--random_networks", "1", "--out", tmp_path], timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import latency_check

    result = json.loads((tmp_path / "latency_check_32.json").read_text())
    setups = [(s["space"], s["runtime"], s["threads"], s["order"]) for s in result["setups"]]
    assert setups == [(space, runtime, threads or "default", order)
                      for space, runtime, threads, order in latency_check.SETUPS]
    for setup in result["setups"]:
        names = [row["network"] for row in setup["rows"]]
        assert names == (["random0"] if setup["space"] == "default" else list(latency_check.NETWORKS))
        for row in setup["rows"]:
            alone = (row["alone_before_ms"] + row["alone_after_ms"]) / 2
            assert row["ratio"] == pytest.approx(row["predicted_ms"] / alone)
        if setup["order"] == "context" and setup["space"] == "released":  # its networks are the context
            for row in setup["rows"]:
                assert row["predicted_ms"] > 0 and row["network"] in setup["meta"]["contexts_ms"]
    first = (tmp_path / "latency_check_32.md").read_text()
    (tmp_path / "latency_check_32.md").unlink()
    again = run_script(["benchmarks/latency_check.py", "--markdown_from", tmp_path / "latency_check_32.json"])
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "latency_check_32.md").read_text() == first
