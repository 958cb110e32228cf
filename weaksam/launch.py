"""Run a training stage in this process, or in one process per GPU under ``torchrun``.

A Snakemake job that holds several GPUs (``compute.train_gpus`` > 1, so the rule asks SLURM for
that many) starts ``python -m torch.distributed.run --standalone --nproc_per_node N -m
weaksam.launch SPEC`` where SPEC is a JSON file naming the stage function and its arguments. Each
process loads the config, and the trainers split every step's images over the processes and sum
the gradients (``weaksam.training.Distributed``). Process 0 writes the rule's log and the
outputs; the others log to ``<log>.rank<N>``.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from weaksam.config import WeaksamConfig, load_config
from weaksam.dependencies import restrict
from weaksam.logs import setup_rule_logging


def _resolve(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    if not name:
        raise ValueError(f"launch target {target!r}: expected 'package.module:function'")
    fn = getattr(importlib.import_module(module), name)
    if not callable(fn):
        raise TypeError(f"launch target {target!r} is not callable")
    return fn


def _config(
    raw: Mapping[str, Any], rule: str | None, wildcards: Mapping[str, str] | None
) -> WeaksamConfig:
    cfg = load_config(raw)
    return cfg if rule is None else restrict(cfg, rule, wildcards)


def run_stage(
    target: str,
    config: Mapping[str, Any],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    processes: int,
    log: str,
    rule: str | None = None,
    wildcards: Mapping[str, str] | None = None,
    outputs: Sequence[str] = (),
) -> None:
    """Call ``target(config, *args, **kwargs)`` here when ``processes`` is 1, else in
    ``processes`` processes under torchrun (gloo on CPU, NCCL on CUDA), with the config
    validated and, when ``rule`` is given, restricted to the keys the rule declares
    (``weaksam.dependencies.restrict``, ``wildcards`` naming the job). ``args`` and ``kwargs``
    must be JSON values. ``rule`` and ``outputs`` give the rule's closing summary line
    (``weaksam.logs.setup_rule_logging``)."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if processes == 1:
        setup_rule_logging(log, rule=rule, outputs=outputs)
        _resolve(target)(_config(config, rule, wildcards), *args, **kwargs)
        return
    _resolve(target)  # fail here, not in N processes
    spec = Path(log).with_suffix(".launch.json")
    spec.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "target": target,
        "config": config,
        "args": list(args),
        "kwargs": dict(kwargs),
        "log": log,
        "rule": rule,
        "wildcards": dict(wildcards or {}),
    }
    spec.write_text(json.dumps(payload, default=str))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "weaksam.launch",
        str(spec),
    ]
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{target} under torchrun with {processes} processes exited with {done.returncode}; "
            f"see {log} and {log}.rank*"
        )
    spec.unlink()
    # the summary goes after process 0's records, at this process's exit
    setup_rule_logging(log, rule=rule, outputs=outputs, append=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of one torchrun process: ``python -m weaksam.launch SPEC``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m weaksam.launch SPEC.json (started by torchrun)", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    rank = int(os.environ.get("RANK", "0"))
    log = spec["log"] if rank == 0 else f"{spec['log']}.rank{rank}"
    setup_rule_logging(log)
    cfg = _config(spec["config"], spec.get("rule"), spec.get("wildcards"))
    _resolve(spec["target"])(cfg, *spec["args"], **spec["kwargs"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
