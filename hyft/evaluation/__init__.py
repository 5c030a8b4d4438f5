"""Metrics and measurement. Import the submodules directly; nothing heavy is imported here.

- ``metrics``: pure metric functions (accuracy, macro/Δ, ECE, BLEU/chrF, GSM8K EM, pass@k), re-exported
  with ``calibration`` (temperature scaling) and ``bootstrap`` (paired bootstrap CI); also ``hyft.metrics``.
- ``orthographic``: the three orthographic variant operations and the robustness report.
- ``sandbox``: run untrusted code (HumanEval) in a limited subprocess; also ``hyft.sandbox``.
- ``footprint``: step time, peak memory, parameter counts, saved-for-backward bytes.
"""
