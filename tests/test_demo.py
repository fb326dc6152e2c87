"""The README's demo command, run as written: real data, from scratch, >= 97% top-1."""
import json

import pytest

from conftest import run_script


@pytest.mark.slow
def test_demo_reaches_97_percent_and_runs_every_step(tmp_path):
    out = tmp_path / "demo_output"
    proc = run_script(["tools/demo.py", "--out", out], timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["val_images"] == 359 and summary["top1"] >= 0.97, summary
    assert (out / "demo_digits.mindir").stat().st_size > 1_000_000
    assert (out / "run" / "metrics.png").is_file()
    for step in ("=== train", "=== evaluate", "=== export", "=== predict"):
        assert step in proc.stdout
    assert "reloaded and compared" in proc.stdout
    assert f"top-1 {100 * summary['top1']:.2f}% on 359 held-out digits" in proc.stdout
    # a second run into the same folder is refused instead of mixing results
    again = run_script(["tools/demo.py", "--out", out])
    assert again.returncode != 0 and "already exists" in again.stderr
