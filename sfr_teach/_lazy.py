"""Lazy package exports (PEP 562): a package names what it exports and where; each module is imported on first use.

    __getattr__, __dir__ = lazy_exports(__name__, globals(), {"Volume": "volume", ...})

so ``from sfr_teach.data import resolve_la_dir`` or ``sfr_teach.sam.SAM_MODELS`` does not pay for importing
torch, MONAI or segment_anything.
"""
from importlib import import_module
from typing import Any, Callable, Dict, List, Tuple


def lazy_exports(package: str, namespace: Dict[str, Any], where: Dict[str, str]) -> Tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package``: ``where`` maps an exported name to its submodule."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f".{where[name]}", package), name)
        namespace[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> List[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__
