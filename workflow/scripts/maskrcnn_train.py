"""Rule `maskrcnn_train`: Mask R-CNN on the pseudo masks (checkpointed, resumable)."""

from weaksam.config import load_config
from weaksam.logs import setup_rule_logging
from weaksam.retrain.stage import train_stage

setup_rule_logging(snakemake.log[0])
train_stage(
    load_config(snakemake.config),
    snakemake.input.manifest,
    snakemake.input.masks,
    snakemake.output.model,
    masks=True,
    train_log=snakemake.output.train_log,
    threads=snakemake.threads,
    roi_drop=snakemake.params.roi_drop,
)
