"""Rule `maskrcnn_train`: Mask R-CNN on the pseudo masks (checkpointed, resumable); with
`compute.train_gpus` > 1, one torchrun process per GPU."""

from weaksam.launch import run_stage

gpus = int(snakemake.config.get("compute", {}).get("train_gpus", 1))
run_stage(
    "weaksam.retrain.stage:train_stage",
    snakemake.config,
    [snakemake.input.manifest, snakemake.input.masks, snakemake.output.model],
    {
        "masks": True,
        "train_log": snakemake.output.train_log,
        "threads": max(1, snakemake.threads // gpus),
        "roi_drop": snakemake.params.roi_drop,
        # the upper bound trains on ground truth, which may have masks for some images only
        "partial_masks": snakemake.rule == "oracle_maskrcnn_train",
    },
    processes=gpus,
    log=snakemake.log[0],
    rule=snakemake.rule,
    wildcards=dict(snakemake.wildcards.items()),
    outputs=list(snakemake.output),
)
