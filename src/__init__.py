"""ProxylessNAS for MindSpore.

``create_model`` is imported lazily so that importing ``src`` (for the config
system, for example) does not load MindSpore before the environment is set up.
"""
from typing import Any, Optional


def create_model(name: str = "proxylessnas_mobile", num_classes: Optional[int] = None, **options: Any):
    """Build a ProxylessNAS variant by name or official config file (see ``src.proxylessnas_mobile.create_model``)."""
    from src.proxylessnas_mobile import create_model as _create

    return _create(name, num_classes=num_classes, **options)


def list_models():
    """Names of the registered variants."""
    from src.arch import ARCHS

    return sorted(ARCHS)
