"""The grid of a run: one cell = (model, method, task, k-shot, curation stage, seed)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hyft.experiments.config import RunConfig

NO_CURATION = "none"


@dataclass(frozen=True)
class Cell:
    model: str
    method: str
    task: str
    k_shot: int
    curation: str
    seed: int

    @property
    def cell_id(self) -> str:
        return f"{self.model}__{self.method}__{self.task}__k{self.k_shot}__{self.curation}__seed{self.seed}"

    def as_dict(self) -> dict:
        return {"cell_id": self.cell_id, **asdict(self)}


def plan_cells(config: RunConfig) -> list[Cell]:
    """All cells in run order: per model and task (groups expanded, config order), the main grid, then the
    curation-ablation cells it does not already hold.

    k = 0 trains nothing, so it runs once per model, task and seed (method label ``zero-shot``).
    """
    main_stage = config.curation.train_stage if config.curation else NO_CURATION
    cells: list[Cell] = []
    for model in config.models:
        for task in config.tasks():
            for k in config.data.k_shots:
                methods = ["zero-shot"] if k == 0 else list(config.methods)
                for method in methods:
                    for seed in config.run.seeds:
                        cells.append(Cell(model.name, method, task, k, main_stage, seed))
            if config.curation:
                ablation_methods = config.curation.ablation_methods or list(config.methods)
                for stage in config.curation.ablation_stages:
                    for k in (k for k in config.data.k_shots if k > 0):
                        for method in ablation_methods:
                            for seed in config.run.seeds:
                                cell = Cell(model.name, method, task, k, stage, seed)
                                if cell not in cells:
                                    cells.append(cell)
    return cells
