"""A small, deterministic mutation-testing driver for hyft's math-critical code (issue 14, part 5).

Why not mutmut / cosmic-ray: on the 2-core machine each pytest start costs ~4 s of imports (torch,
transformers, peft) and a mutant run over the whole suite minutes; a full mutmut run over
``hyft/adapters`` would take days. This driver keeps what matters and drops that cost:

- **mutants** are AST-based and deterministic: arithmetic operator swaps (``+ ↔ -``, ``* ↔ /``,
  ``** → *``, ``// → *``, ``% → //``, ``& ↔ |``, augmented ``+= ↔ -=``), comparison flips
  (``< ↔ <=``, ``> ↔ >=``, ``== ↔ !=``, ``is ↔ is not``, ``in ↔ not in``), ``and ↔ or``, dropped
  unary ``not`` / ``-``, constants (number n → n + 1, ``True ↔ False``), and dropped statements
  (a call statement or an augmented assignment becomes ``pass``; ``raise`` becomes ``pass``).
  Docstrings, strings, f-strings, annotations and ``__all__`` are never mutated. Candidates are
  sampled per file with a fixed seed (``--per-file``), so a run is reproducible.
- **tests**: each file maps to the fast test files that cover it (``TEST_MAP``); a mutant runs
  ``pytest -x -q -p no:xdist -p no:cacheprovider`` on those only, with a timeout of 3× the clean run
  (at least 60 s).
- **no import cost per mutant**: a parent process imports torch, transformers, peft, sacrebleu and
  pytest once and forks one child per mutant; the child imports ``hyft`` fresh from the scratch tree
  (never from the checkout; bytecode writing is off so a stale ``.pyc`` cannot mask a mutant) and calls
  ``pytest.main``. Exit 0 = survived, any test failure or collection error = killed, timeout = timed out.
- **isolation**: mutants are written into a scratch copy of ``hyft/`` and ``tests/`` in a temp dir made
  at run time; the checkout is never edited.

Usage (from the repository root, on one core, low priority)::

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python bench/mutation.py run --out bench/results/mutation-run.jsonl
    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python bench/mutation.py run --only metrics.py:17,cayley.py:3 \
        --out bench/results/mutation-rerun.jsonl
    .venv/bin/python bench/mutation.py list --file hyft/adapters/cayley.py   # every candidate, numbered
    .venv/bin/python bench/mutation.py summary bench/results/mutation-run.jsonl

Results: bench/results/mutation.md.
"""

from __future__ import annotations

import argparse
import ast
import copy
import itertools
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED = 14

# Source file → the fast test files that cover it (each mutant runs only these). The *_edges.py files
# were written after the first run to kill its survivors (bench/results/mutation.md).
TEST_MAP: dict[str, list[str]] = {
    "hyft/evaluation/metrics.py": [
        "tests/evaluation_metrics/test_metrics_edges.py",
        "tests/evaluation_metrics/test_metrics.py",
        "tests/evaluation_metrics/test_translation_delta_and_mtbench.py",
        "tests/evaluation_metrics/test_bleu.py",
    ],
    "hyft/adapters/cayley.py": [
        "tests/adapters_orthogonal/test_orthogonal_edges.py",
        "tests/adapters_orthogonal/test_cayley_butterfly.py",
        "tests/adapters_orthogonal/test_boft.py",
        "tests/adapters_orthogonal/test_peft_fidelity.py",
    ],
    "hyft/adapters/butterfly.py": [
        "tests/adapters_orthogonal/test_orthogonal_edges.py",
        "tests/adapters_orthogonal/test_cayley_butterfly.py",
        "tests/adapters_orthogonal/test_boft.py",
        "tests/adapters_orthogonal/test_rotated_linear.py",
    ],
    "hyft/adapters/mixer.py": [
        "tests/adapters_hybrid/test_hybrid_edges.py",
        "tests/adapters_hybrid/test_hybrid.py",
    ],
    "hyft/adapters/lora.py": [
        "tests/adapters_core/test_lora_edges.py",
        "tests/adapters_core/test_lora.py",
        "tests/adapters_core/test_save_merge.py",
        "tests/adapters_hybrid/test_hybrid.py",
    ],
    "hyft/adapters/lora_ga.py": [
        "tests/adapters_core/test_lora_edges.py",
        "tests/adapters_core/test_lora_ga.py",
        "tests/adapters_hybrid/test_lora_ga_directions.py",
    ],
    "hyft/adapters/boft.py": [
        "tests/adapters_orthogonal/test_orthogonal_edges.py",
        "tests/adapters_orthogonal/test_boft.py",
        "tests/adapters_orthogonal/test_cayley_butterfly.py",
        "tests/adapters_orthogonal/test_peft_format.py",
        # batched rotation (batch_key, prepared blocks): added for the rerun
        "tests/adapters_hybrid/test_hybrid.py",
    ],
    "hyft/adapters/hybrid.py": [
        "tests/adapters_hybrid/test_hybrid_edges.py",
        "tests/adapters_hybrid/test_hybrid.py",
        "tests/adapters_hybrid/test_hybrid_unitary.py",
    ],
    "hyft/adapters/unitary.py": [
        "tests/adapters_orthogonal/test_orthogonal_edges.py",
        "tests/adapters_orthogonal/test_unitary.py",
        "tests/adapters_hybrid/test_hybrid_unitary.py",
    ],
    "hyft/adapters/input_operator.py": [
        "tests/adapters_orthogonal/test_orthogonal_edges.py",
        "tests/adapters_orthogonal/test_boft.py",
        "tests/adapters_hybrid/test_hybrid.py",
        "tests/adapters_orthogonal/test_rotated_linear.py",
    ],
}

# Heavy third-party modules imported once in the parent (never hyft itself: the child imports it fresh).
PRELOAD = (
    "numpy",
    "torch",
    "torch.nn",
    "pytest",
    "sacrebleu",
    "sacrebleu.metrics",
    "transformers",
    "peft",
    "transformers.models.llama.modeling_llama",
    "transformers.models.bert.modeling_bert",
    "transformers.models.bloom.modeling_bloom",
    "hypothesis",
    "safetensors.torch",
)

BINOP_SWAP: dict[type, type] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.Pow: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
}
CMP_SWAP: dict[type, type] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


@dataclass(frozen=True)
class Mutant:
    """One mutation: ``file``'s bytes [start, end) of line ``line`` onwards replaced by ``replacement``."""

    id: str  # "<file name>:<candidate index>"
    file: str  # repository-relative path
    line: int
    operator: str
    original: str
    replacement: str
    start: int  # byte offsets into the file
    end: int


def _offsets(source: bytes) -> list[int]:
    """Byte offset of the start of each line (1-based line numbers index into it)."""
    starts, position = [0, 0], 0
    for line in source.splitlines(keepends=True):
        position += len(line)
        starts.append(position)
    return starts


def _skipped_nodes(tree: ast.Module) -> set[int]:
    """ids of nodes never mutated: docstrings, f-strings, annotations, decorators, ``__all__``."""
    skip: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(child) for child in ast.walk(node))

    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                mark(body[0])
        if isinstance(node, ast.JoinedStr):
            mark(node)
        if isinstance(node, ast.arg):
            mark(node.annotation)
        if isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            mark(node.returns)
            for decorator in node.decorator_list:
                mark(decorator)
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            mark(node)
        if isinstance(node, ast.ImportFrom | ast.Import):
            mark(node)
        # Dimension indices (``-1``, ``dim=…``, ``axis=…``): on square blocks mostly equivalent, otherwise an
        # immediate shape error; they would flood the run without testing any math.
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
        ):
            mark(node)
        if isinstance(node, ast.keyword) and node.arg in ("dim", "axis"):
            mark(node.value)
    return skip


def _mutations(node: ast.AST) -> Iterator[tuple[str, str]]:
    """(operator name, replacement source) for each mutation of ``node`` itself."""
    if isinstance(node, ast.BinOp) and type(node.op) in BINOP_SWAP:
        new = copy.deepcopy(node)
        new.op = BINOP_SWAP[type(node.op)]()
        yield f"binop {type(node.op).__name__}→{type(new.op).__name__}", f"({ast.unparse(new)})"
    elif isinstance(node, ast.Compare):
        for index, op in enumerate(node.ops):
            if type(op) in CMP_SWAP:
                new = copy.deepcopy(node)
                new.ops[index] = CMP_SWAP[type(op)]()
                yield f"compare {type(op).__name__}→{type(new.ops[index]).__name__}", f"({ast.unparse(new)})"
    elif isinstance(node, ast.BoolOp):
        new = copy.deepcopy(node)
        new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        yield f"boolop {type(node.op).__name__}→{type(new.op).__name__}", f"({ast.unparse(new)})"
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
        yield f"drop unary {type(node.op).__name__}", f"({ast.unparse(node.operand)})"
    elif (
        isinstance(node, ast.Constant) and not isinstance(node.value, str | bytes) and node.value is not None
    ):
        value = node.value
        if isinstance(value, bool):
            yield "constant bool", repr(not value)
        elif isinstance(value, int | float):
            yield "constant n→n+1", repr(value + 1)
    elif isinstance(node, ast.AugAssign) and type(node.op) in BINOP_SWAP:
        new = copy.deepcopy(node)
        new.op = BINOP_SWAP[type(node.op)]()
        yield f"augassign {type(node.op).__name__}→{type(new.op).__name__}", ast.unparse(new)
        yield "drop statement", "pass"
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        yield "drop statement", "pass"
    elif isinstance(node, ast.Raise):
        yield "drop raise", "pass"


def candidates(path: str) -> list[Mutant]:
    """Every mutant of one file, in source order (the index is the mutant's stable id)."""
    source = (REPO / path).read_bytes()
    tree = ast.parse(source)
    skip = _skipped_nodes(tree)
    starts = _offsets(source)
    reference = ast.dump(tree)
    found: list[Mutant] = []
    nodes = sorted(
        (n for n in ast.walk(tree) if hasattr(n, "lineno") and id(n) not in skip),
        key=lambda n: (n.lineno, n.col_offset, -n.end_lineno, -n.end_col_offset),
    )
    for node in nodes:
        start = starts[node.lineno] + node.col_offset
        end = starts[node.end_lineno] + node.end_col_offset
        original = source[start:end].decode()
        for operator, replacement in _mutations(node):
            mutated = source[:start] + replacement.encode() + source[end:]
            try:
                if ast.dump(ast.parse(mutated)) == reference:
                    continue
            except SyntaxError:
                continue
            index = len(found)
            found.append(
                Mutant(
                    f"{Path(path).name}:{index}",
                    path,
                    node.lineno,
                    operator,
                    " ".join(original.split())[:120],
                    replacement[:120],
                    start,
                    end,
                )
            )
    return found


def select(per_file: int, files: list[str]) -> list[Mutant]:
    """A deterministic sample of at most ``per_file`` mutants of each file (all of them when fewer),
    interleaved across files."""
    per_path: list[list[Mutant]] = []
    for path in files:
        every = candidates(path)
        rng = random.Random(f"{SEED}:{path}")
        sample = every if len(every) <= per_file else rng.sample(every, per_file)
        per_path.append(sorted(sample, key=lambda m: int(m.id.rsplit(":", 1)[1])))
    # Round-robin over the files, so that a run cut short by --budget-s covers every file evenly.
    return [m for rank in itertools.zip_longest(*per_path) for m in rank if m is not None]


def by_id(ids: list[str], files: list[str]) -> list[Mutant]:
    """The mutants named ``<file name>:<index>`` (as in a results file)."""
    table = {m.id: m for path in files for m in candidates(path)}
    missing = [i for i in ids if i not in table]
    if missing:
        raise SystemExit(f"unknown mutant ids: {missing}")
    return [table[i] for i in ids]


# --------------------------------------------------------------------------- running


def make_scratch() -> Path:
    """A temp copy of hyft/, tests/ and bench/ (some tests import bench helpers) plus pyproject.toml,
    without bytecode caches or results."""
    scratch = Path(tempfile.mkdtemp(prefix="hyft-mutation-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "results")
    for folder in ("hyft", "tests", "bench"):
        shutil.copytree(REPO / folder, scratch / folder, ignore=ignore)
    shutil.copy2(REPO / "pyproject.toml", scratch / "pyproject.toml")
    return scratch


def _child(scratch: Path, tests: list[str], log: Path) -> None:
    """In the forked child: pytest on ``tests`` with ``hyft`` imported from the scratch tree;
    never returns."""
    code = 3
    try:
        os.setsid()
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(scratch)
        sys.dont_write_bytecode = True
        sys.path.insert(0, str(scratch))
        import hyft  # noqa: F401  (fresh: the parent never imports it)

        if not str(Path(hyft.__file__).resolve()).startswith(str(scratch.resolve())):
            print(f"hyft imported from {hyft.__file__}, not the scratch tree", flush=True)
            os._exit(4)
        import pytest

        code = int(pytest.main(["-x", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", *tests]))
    except BaseException as error:  # noqa: BLE001 — any failure in the child is reported by exit code
        print(f"child error: {error!r}", flush=True)
        code = 3
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_tests(scratch: Path, tests: list[str], timeout: float, log: Path) -> tuple[str, float, int]:
    """Fork, run, wait: (outcome, seconds, exit code). outcome: survived | killed | timeout | error."""
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(scratch, tests, log)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > timeout:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - start, -9
        time.sleep(0.05)
    seconds = time.monotonic() - start
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return "survived", seconds, code
    if code in (1, 2):  # test failure; collection / import error of the mutated module
        return "killed", seconds, code
    return "error", seconds, code


def run(mutants: list[Mutant], out: Path, budget_s: float | None) -> None:
    """Baseline each file's tests on the clean scratch tree, then every mutant; one JSON line each."""
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    assert "hyft" not in sys.modules, "the parent must not import hyft"
    scratch = make_scratch()
    if os.environ.get("HYFT_DATA_DIR") is None:
        os.environ["HYFT_DATA_DIR"] = str((REPO.parent / "shared" / "data").resolve())
    log = scratch / "pytest.log"
    began = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as sink:
        timeouts: dict[str, float] = {}
        for path in sorted({m.file for m in mutants}):
            outcome, seconds, code = run_tests(scratch, TEST_MAP[path], 900, log)
            if outcome != "survived":
                raise SystemExit(
                    f"clean run of {TEST_MAP[path]} failed ({outcome}, exit {code}):\n"
                    f"{log.read_text()[-3000:]}"
                )
            timeouts[path] = max(60.0, 3 * seconds)
            sink.write(json.dumps({"baseline": path, "seconds": round(seconds, 2)}) + "\n")
            sink.flush()
            print(f"baseline {path}: {seconds:.1f}s", flush=True)
        for count, mutant in enumerate(mutants, 1):
            if budget_s is not None and time.monotonic() - began > budget_s:
                print(f"budget of {budget_s:.0f}s spent after {count - 1} mutants", flush=True)
                break
            target = scratch / mutant.file
            original = (REPO / mutant.file).read_bytes()
            target.write_bytes(
                original[: mutant.start] + mutant.replacement.encode() + original[mutant.end :]
            )
            try:
                outcome, seconds, code = run_tests(scratch, TEST_MAP[mutant.file], timeouts[mutant.file], log)
            finally:
                target.write_bytes(original)
            record = {**asdict(mutant), "outcome": outcome, "seconds": round(seconds, 2), "exit": code}
            if outcome == "error":
                record["log_tail"] = log.read_text(errors="replace")[-1500:]
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            sink.flush()
            print(
                f"[{count}/{len(mutants)}] {mutant.id:22} {outcome:8} {seconds:6.1f}s  "
                f"L{mutant.line} {mutant.operator}: {mutant.original[:50]!r} → {mutant.replacement[:50]!r}",
                flush=True,
            )
    shutil.rmtree(scratch, ignore_errors=True)


def summary(results: Path) -> str:
    """Markdown table per file (mutants, killed, survived, timed out, errors) and the survivor list."""
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    mutants = [r for r in rows if "outcome" in r]
    files = sorted({r["file"] for r in mutants})
    lines = [
        "| file | candidates | run | killed | survived | timed out | error |",
        "|---|---|---|---|---|---|---|",
    ]
    totals = [0] * 6
    for path in files:
        mine = [r for r in mutants if r["file"] == path]
        counts = [len(candidates(path)), len(mine)] + [
            sum(r["outcome"] == o for r in mine) for o in ("killed", "survived", "timeout", "error")
        ]
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        lines.append(f"| `{path}` | " + " | ".join(map(str, counts)) + " |")
    lines.append("| **total** | " + " | ".join(f"**{t}**" for t in totals) + " |")
    lines.append("")
    for r in mutants:
        if r["outcome"] in ("survived", "error"):
            lines.append(
                f"- `{r['id']}` ({r['outcome']}) L{r['line']} {r['operator']}: "
                f"`{r['original']}` → `{r['replacement']}`"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run the sampled mutants (or --only some ids)")
    run_p.add_argument("--per-file", type=int, default=30, help="mutants sampled per file (seeded)")
    run_p.add_argument("--only", default="", help="comma-separated mutant ids to run instead of the sample")
    run_p.add_argument("--files", default=",".join(TEST_MAP), help="comma-separated source files")
    run_p.add_argument("--budget-s", type=float, default=None, help="stop starting mutants after this")
    run_p.add_argument("--out", type=Path, default=REPO / "bench/results/mutation-run.jsonl")
    list_p = sub.add_parser("list", help="print the candidates of a file, or the sample")
    list_p.add_argument("--file", default=None)
    list_p.add_argument("--per-file", type=int, default=30)
    sum_p = sub.add_parser("summary", help="markdown table of a results file")
    sum_p.add_argument("results", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        files = args.files.split(",")
        mutants = by_id(args.only.split(","), files) if args.only else select(args.per_file, files)
        run(mutants, args.out, args.budget_s)
    elif args.command == "list":
        files = [args.file] if args.file else list(TEST_MAP)
        for path in files:
            every = candidates(path)
            chosen = {m.id for m in select(args.per_file, [path])}
            print(f"{path}: {len(every)} candidates, {len(chosen)} sampled")
            for m in every:
                mark = "*" if m.id in chosen else " "
                print(
                    f" {mark} {m.id:22} L{m.line:<4} {m.operator:24} "
                    f"{m.original[:60]!r} → {m.replacement[:60]!r}"
                )
    else:
        print(summary(args.results))


if __name__ == "__main__":
    main()
