"""Public sandbox API: ``hyft.sandbox.run(code, timeout_s)`` and the HumanEval helpers.

Thin re-export of :mod:`hyft.evaluation.sandbox` (see there for the isolation layers).
"""

from hyft.evaluation.sandbox import (
    SandboxResult,
    humaneval_program,
    run,
    run_humaneval_problem,
    run_humaneval_problems,
    run_many,
)

__all__ = [
    "SandboxResult",
    "humaneval_program",
    "run",
    "run_humaneval_problem",
    "run_humaneval_problems",
    "run_many",
]
