"""governance.md §10.10 and acceptance 2: ledger invariants over random mixes of records, and the
reconciliation check really failing when the ledger is wrong."""

from __future__ import annotations

import json
import random

import pytest
from conftest import xnli_rows

from hyft.governance import CurationConfig, LedgerError, Reason, curate
from hyft.governance.ledger import check_ledger, read_jsonl


def _random_pool(rng: random.Random) -> list[bytes]:
    sources = {lang: xnli_rows(lang)[600:900] for lang in ("en", "zh", "es")}
    lines: list[bytes] = []
    kept_so_far: list[dict] = []
    for _ in range(rng.randint(60, 140)):
        lang = rng.choice(list(sources))
        row = dict(rng.choice(sources[lang]), lang=lang)
        kind = rng.random()
        if kind < 0.55:
            record = row
        elif kind < 0.65 and kept_so_far:
            record = dict(rng.choice(kept_so_far))  # exact duplicate
        elif kind < 0.70:
            record = dict(row, premise="")  # empty
        elif kind < 0.75:
            record = dict(row, premise="Aise mera usse picha choota tha yaar", lang="hi")  # wrong script
        elif kind < 0.80:
            record = dict(row, premise="lorem ipsum " * 400)  # too long
        elif kind < 0.85:
            record = dict(row, premise="".join(rng.sample(row["premise"], len(row["premise"]))))  # garbage
        elif kind < 0.90:
            lines.append(rng.choice([b"", b"{oops", b"\xff\xfe{}", b"null", b'{"premise": 1}']))
            continue
        elif kind < 0.95:
            record = dict(row, lang=rng.choice(["xx", "EN-us", "zho_Hans", "cmn", True]))
        else:
            record = dict(row, hypothesis=row["premise"])
        kept_so_far.append(record)
        lines.append(json.dumps(record, ensure_ascii=False).encode())
    return lines


@pytest.mark.parametrize("seed", range(6))
def test_ledger_invariants_on_random_mixes(seed, tmp_path):
    rng = random.Random(seed)
    lines = _random_pool(rng)
    pool = tmp_path / "pool.jsonl"
    pool.write_bytes(b"\n".join(lines) + b"\n")
    config = CurationConfig(
        text_fields=["premise", "hypothesis"], label_field="label", progress=False, quality={"min_pool": 20}
    )
    result = curate(pool, config, tmp_path / "out")
    rows = read_jsonl(result.ledger_path)
    assert [r["line"] for r in rows] == list(range(1, len(lines) + 1))  # every line once, in order
    assert all(r["reason"] is None or r["reason"] in {x.value for x in Reason} for r in rows)
    # dup_of names a record of the final view C2, or the row says why its representative is not there
    final = {(r["lang"], r["id"]) for r in rows if r["view"] == "c2"}
    reason_of = {(r["lang"], r["id"]): r["reason"] for r in rows}
    for r in rows:
        if r["dup_of"] is not None and (r["lang"], r["dup_of"]) not in final:
            assert r["evidence"]["representative_dropped"] == reason_of[(r["lang"], r["dup_of"])], r
    for lang, summary in result.report["languages"].items():
        mine = [r for r in rows if r["lang"] == lang]
        assert summary["n_input"] == len(mine)
        assert summary["n_c2"] + sum(summary["dropped"].values()) == len(mine)
        assert summary["n_c2"] == sum(r["kept"] for r in mine)
        stages = summary["stages"]
        assert stages["validate"]["in"] == len(mine) and stages["perplexity"]["kept"] == summary["n_c2"]
    assert sum(s["n_input"] for s in result.report["languages"].values()) == len(lines)


def test_reconciliation_fails_loudly(tmp_path):
    rows = [dict(r, lang="en") for r in xnli_rows("en")[:60]]
    rows.append(dict(rows[0]))
    result = curate(rows, CurationConfig(text_fields=["premise", "hypothesis"], progress=False), tmp_path)
    ledger = read_jsonl(result.ledger_path)
    views = {"c0": result.c0, "c1": result.c1, "c2": result.c2}
    check_ledger(ledger, len(rows), views)  # the real ledger reconciles
    with pytest.raises(LedgerError, match="rows for"):
        check_ledger(ledger[:-1], len(rows), views)
    with pytest.raises(LedgerError, match="more than once"):
        check_ledger(ledger + [ledger[0]], len(rows) + 1, views)
    duplicate = next(r for r in ledger if r["dup_of"] is not None)
    broken = [
        dict(r, view="c0", kept=False, reason="too_short", stage="length")
        if r["id"] == duplicate["dup_of"]
        else r
        for r in ledger
    ]
    with pytest.raises(LedgerError):
        check_ledger(broken, len(rows), views)
    with pytest.raises(LedgerError, match="closed set"):
        check_ledger([dict(ledger[0], reason="made_up")] + ledger[1:], len(rows), views)


def test_views_are_checked_by_identity_not_by_count(tmp_path):
    """A view that holds a dropped record, or a copy of a kept one, in place of a kept record has the
    same per-language counts; check_ledger must still refuse it by comparing (source, line)."""
    rows = [dict(r, lang="en") for r in xnli_rows("en")[:60]]
    rows.append(dict(rows[0]))  # an exact duplicate: one record is dropped after C0
    result = curate(rows, CurationConfig(text_fields=["premise", "hypothesis"], progress=False), tmp_path)
    ledger = read_jsonl(result.ledger_path)
    views = {"c0": result.c0, "c1": result.c1, "c2": result.c2}
    check_ledger(ledger, len(rows), views)
    dropped = next(r for r in ledger if r["view"] == "c0")  # dropped by dedup: in C0 only
    provenance = {k: dropped[k] for k in ("id", "source", "line", "lang")}
    swapped = {**views, "c2": views["c2"][:-1] + [dict(views["c2"][-1], _provenance=provenance)]}
    with pytest.raises(LedgerError, match=r"c2: .*1 missing.*1 not in the ledger"):
        check_ledger(ledger, len(rows), swapped)
    copied = {**views, "c1": views["c1"][:-1] + [views["c1"][0]]}
    with pytest.raises(LedgerError, match=r"c1: .*1 missing.*1 not in the ledger or repeated"):
        check_ledger(ledger, len(rows), copied)


def test_iterable_input_uses_positions_as_ids(tmp_path):
    rows = [dict(r, lang="en") for r in xnli_rows("en")[:20]] + ["{broken"]
    result = curate(rows, CurationConfig(text_fields=["premise", "hypothesis"], progress=False), tmp_path)
    ledger = read_jsonl(result.ledger_path)
    assert [r["id"] for r in ledger] == list(range(1, 22))
    assert ledger[-1]["reason"] == "invalid_json" and ledger[-1]["detail"].startswith("<iterable>:21: ")


def test_repeated_ids_are_flagged_and_the_smallest_key_wins(tmp_path):
    rows = [
        {"uid": 7, "text": "The river flooded the valley after three days of rain.", "lang": "en"},
        {"uid": 3, "text": "The river flooded the valley after three days of rain.", "lang": "en"},
        {"uid": 7, "text": "A completely different sentence about mountain goats.", "lang": "en"},
    ]
    config = CurationConfig(text_fields=["text"], id_field="uid", progress=False)
    ledger = read_jsonl(curate(rows, config, tmp_path).ledger_path)
    by_line = {r["line"]: r for r in ledger}
    assert by_line[1]["reason"] == "exact_duplicate" and by_line[1]["dup_of"] == 3  # uid 3 < uid 7
    assert [r["line"] for r in ledger] == [2, 1, 3]  # ledger in record-key order
    assert "duplicate_id" in by_line[3]["flags"] and "duplicate_id" not in by_line[1]["flags"]


def test_cyclic_gc_is_paused_inside_a_stage_and_restored_after():
    import gc

    from hyft.governance.stages import cyclic_gc_paused

    assert gc.isenabled()
    with cyclic_gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    try:
        with cyclic_gc_paused():
            raise RuntimeError("stage failed")
    except RuntimeError:
        pass
    assert gc.isenabled()
    gc.disable()
    try:
        with cyclic_gc_paused():
            pass
        assert not gc.isenabled()  # a caller's own choice is left alone
    finally:
        gc.enable()
