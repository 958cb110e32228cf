"""Rules `dino_train`, `mask2former_train`: a transformer retrainer on the pseudo ground truth /
pseudo masks (checkpointed, resumable); with `compute.train_gpus` > 1, one torchrun process per
GPU."""

from weaksam.launch import run_stage

gpus = int(snakemake.config.get("compute", {}).get("train_gpus", 1))
run_stage(
    "weaksam.detr.stage:train_stage",
    snakemake.config,
    [snakemake.params.kind, snakemake.input.manifest, snakemake.input.pgt, snakemake.output.model],
    {
        "train_log": snakemake.output.train_log,
        "threads": max(1, snakemake.threads // gpus),
    },
    processes=gpus,
    log=snakemake.log[0],
    rule=snakemake.rule,
    wildcards=dict(snakemake.wildcards.items()),
    outputs=list(snakemake.output),
)
