"""Shared test setup: import path, CPU environment, reference files, small helpers."""
import os
import sys
from pathlib import Path

# Before MindSpore loads (see src/model_utils/device.py for why).
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
NET_CONFIGS = SHARED / "reference" / "net_configs"

VARIANT_CONFIGS = {
    "proxylessnas_mobile": "proxyless_mobile.config",
    "proxylessnas_mobile_14": "proxyless_mobile_14.config",
    "proxylessnas_cpu": "proxyless_cpu.config",
    "proxylessnas_gpu": "proxyless_gpu.config",
}


def official_config(variant: str) -> Path:
    """Path of the released JSON config of a variant; skips (with the reason) when ../shared is absent."""
    path = NET_CONFIGS / VARIANT_CONFIGS[variant]
    if not path.is_file():
        pytest.skip(f"reference config {path} not found: the tests expect ../shared beside the checkout")
    return path


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end runs of a minute or more")
