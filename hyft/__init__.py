"""hyft: hybrid parameter-efficient fine-tuning for many languages, with data governance and fair evaluation.

The adapter API is imported lazily so that ``import hyft.metrics`` does not pay for torch.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["AdapterConfig", "HyftModel", "load", "wrap", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("AdapterConfig", "HyftModel", "load", "wrap"):
        import hyft.adapters as adapters

        return getattr(adapters, name)
    raise AttributeError(f"module 'hyft' has no attribute {name!r}")
