"""Rules `retrain_train*`: Faster R-CNN on pseudo ground truth (checkpointed, resumable)."""

from weaksam.config import load_config
from weaksam.logs import setup_rule_logging
from weaksam.retrain.stage import train_stage

setup_rule_logging(snakemake.log[0])
train_stage(
    load_config(snakemake.config),
    snakemake.input.manifest,
    snakemake.input.pgt,
    snakemake.output.model,
    masks=False,
    train_log=snakemake.output.train_log,
    threads=snakemake.threads,
    roi_drop=snakemake.params.roi_drop,
)
