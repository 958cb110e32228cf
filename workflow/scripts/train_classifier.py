"""Rule `train_classifier`: train on image labels, report image-level mAP; with
`compute.train_gpus` > 1, one torchrun process per GPU."""

from weaksam.launch import run_stage

gpus = int(snakemake.config.get("compute", {}).get("train_gpus", 1))
run_stage(
    "weaksam.cam.stage:train_stage",
    snakemake.config,
    [snakemake.input.manifest],
    {
        "model_out": snakemake.output.model,
        "train_log": snakemake.output.train_log,
        "metrics_out": snakemake.output.metrics,
        "threads": max(1, snakemake.threads // gpus),
    },
    processes=gpus,
    log=snakemake.log[0],
    rule=snakemake.rule,
    wildcards=dict(snakemake.wildcards.items()),
    outputs=list(snakemake.output),
)
