"""hyft: hybrid parameter-efficient fine-tuning for many languages, with data governance and fair evaluation."""

from hyft.adapters import AdapterConfig, HyftModel, load, wrap

__version__ = "0.1.0"
__all__ = ["AdapterConfig", "HyftModel", "load", "wrap", "__version__"]
