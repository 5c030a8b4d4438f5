"""The ``hyft`` command: one verb per stage (curate, train, evaluate, run, ...).

Each verb lives in its own module beside this one and registers itself on ``app``; this file only
assembles them, so ``hyft --help`` lists every stage.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="hyft",
    help="Hybrid PEFT for many languages: curate data, train adapters, evaluate fairly, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_verbs() -> None:
    # Imported here so that `hyft --help` stays fast and a broken optional stage never hides the others.
    from hyft.cli import curate, evaluate, export, report, run, utility

    for module in (run, evaluate, curate, report, export, utility):
        module.register(app)


_register_verbs()

if __name__ == "__main__":
    app()
