"""Rules `wsod_train*`: train one WSOD head on a proposal store (checkpointed, resumable); with
`compute.train_gpus` > 1, one torchrun process per GPU."""

from pathlib import Path

from weaksam.launch import run_stage

gpus = int(snakemake.config.get("compute", {}).get("train_gpus", 1))
model = Path(snakemake.output.model)
run_stage(
    "weaksam.wsod.stage:train_stage",
    snakemake.config,
    [
        snakemake.input.manifest,
        snakemake.input.proposals,
        snakemake.wildcards.head,
        str(model),
    ],
    {
        "digest": snakemake.params.proposals_digest,
        "work": str(model.with_name("checkpoint.pt")),
        "train_log": snakemake.output.train_log,
        "threads": max(1, snakemake.threads // gpus),
    },
    processes=gpus,
    log=snakemake.log[0],
    rule=snakemake.rule,
    wildcards=dict(snakemake.wildcards.items()),
    outputs=list(snakemake.output),
)
