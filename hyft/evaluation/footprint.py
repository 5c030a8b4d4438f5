"""The footprint meter lives in the base module :mod:`hyft.footprint` (adapters and training use it
too); re-exported here, where evaluation code and older imports look for it."""

from hyft.footprint import FootprintMeter, FootprintSummary, count_parameters, saved_tensor_bytes

__all__ = ["FootprintMeter", "FootprintSummary", "count_parameters", "saved_tensor_bytes"]
