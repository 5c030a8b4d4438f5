"""Label-free data governance: C0 (validated) -> C1 (+ LID, dedup) -> C2 (+ length, perplexity).

Public API::

    from hyft.governance import CurationConfig, curate
    result = curate(path_or_iterable, CurationConfig(text_fields=["text"]), out_dir)

Design and measured defaults: shared/design/governance.md.
"""

from hyft.governance.assembly import CurationResult
from hyft.governance.config import CurateJob, CurationConfig, DedupSettings, LidSettings, QualitySettings
from hyft.governance.ledger import LedgerError
from hyft.governance.pipeline import curate
from hyft.governance.reasons import Flag, Reason, Stage

__all__ = [
    "CurateJob",
    "CurationConfig",
    "CurationResult",
    "DedupSettings",
    "Flag",
    "LedgerError",
    "LidSettings",
    "QualitySettings",
    "Reason",
    "Stage",
    "curate",
]
