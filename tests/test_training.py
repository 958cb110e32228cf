"""The training loop every trainer runs through: resume, schedule, log, checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from weaksam.training import Distributed, StepResult, Trainer, train_loop


def _run(tmp_path: Path, name: str, *, stop_after: int | None = None) -> torch.nn.Linear:
    """A linear model fitted by SGD over 5 steps, checkpointing every 2: whatever is left in
    ``tmp_path`` / name.* from an earlier (stopped) run is resumed."""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for group in opt.param_groups:
        group["base_lr"] = 0.1
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    y = torch.tensor([[1.0], [0.0]])

    def step(k: int) -> StepResult:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        value = float(loss.detach())
        return StepResult(value, columns=(k * 10,), parts={"mse": value})

    def save(path: Path, k: int, opts: Mapping[str, torch.optim.Optimizer] | None) -> None:
        state: dict[str, Any] = {"model": model.state_dict(), "step": k}
        if opts is not None:
            state["opt"] = opts["opt"].state_dict()
        torch.save(state, path)

    trainer = Trainer(
        name="linear",
        model=model,
        optimizers={"opt": opt},
        # warm-up: 0.5 at step 0, 1 after
        lr_factors=lambda k: {"opt": 0.5 if k == 0 else 1.0},
        step=step,
        save=save,
        load=lambda path, dev: torch.load(path, weights_only=True),
        logged_lr=lambda: float(opt.param_groups[0]["lr"]),
        columns=("tens",),
        parts=True,
    )
    train_loop(
        trainer,
        iterations=5,
        checkpoint_every=2,
        work=tmp_path / f"{name}.work",
        out=tmp_path / f"{name}.pt",
        log_path=tmp_path / f"{name}.tsv",
        ddp=Distributed(torch.device("cpu")),
        device=torch.device("cpu"),
        stop_after=stop_after,
    )
    return model


def _log(path: Path) -> list[list[str]]:
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    return [r[:4] + r[5:] for r in rows]  # without the seconds


def test_a_stopped_run_resumes_from_its_last_checkpoint_to_the_same_model(tmp_path: Path) -> None:
    full = _run(tmp_path, "full")
    log = _log(tmp_path / "full.tsv")
    assert log[0] == ["step", "loss", "lr", "tens", "parts"]
    assert [r[0] for r in log[1:]] == ["1", "2", "3", "4", "5"]
    assert [r[2] for r in log[1:]] == ["5.000e-02"] + ["1.000e-01"] * 4  # the schedule
    assert [r[3] for r in log[1:]] == ["0", "10", "20", "30", "40"]  # the trainer's column
    assert log[1][4].startswith("mse=")
    assert torch.load(tmp_path / "full.work", weights_only=True)["step"] == 5
    assert "opt" not in torch.load(tmp_path / "full.pt", weights_only=True)  # the final model

    _run(tmp_path, "cut", stop_after=3)  # killed after step 3: its checkpoint is step 2's
    assert not (tmp_path / "cut.pt").exists()
    assert torch.load(tmp_path / "cut.work", weights_only=True)["step"] == 2
    resumed = _run(tmp_path, "cut")
    for p, q in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
    cut = _log(tmp_path / "cut.tsv")
    # the log keeps what ran (step 3 twice: before the kill and again after the resume)
    assert [r[0] for r in cut[1:]] == ["1", "2", "3", "3", "4", "5"]
    assert [r[1] for r in cut[1:] if r[0] != "3"] == [r[1] for r in log[1:] if r[0] != "3"]
