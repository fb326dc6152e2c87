"""ProxylessNAS for MindSpore.

``create_model`` and ``list_models`` (defined once, in :mod:`src.proxylessnas_mobile`) are resolved lazily
on first use, so that importing ``src`` (for the config system, for example) does not load MindSpore before
the environment is set up.
"""
from typing import Any

__all__ = ["create_model", "list_models"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from src import proxylessnas_mobile

        return getattr(proxylessnas_mobile, name)
    raise AttributeError(f"module 'src' has no attribute {name!r}")
