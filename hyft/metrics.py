"""Public metric functions: ``from hyft.metrics import accuracy, expected_calibration_error, ...``.

Thin re-export of :mod:`hyft.evaluation.metrics` (see there for formulas).
"""

from hyft.evaluation import metrics as _metrics
from hyft.evaluation.metrics import *  # noqa: F403  (the list is metrics.__all__, kept in one place)

__all__ = list(_metrics.__all__)
