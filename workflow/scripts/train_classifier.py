"""Rule `train_classifier`: train on image labels, report image-level mAP."""

from weaksam.cam.stage import train_stage
from weaksam.dependencies import job_config
from weaksam.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
train_stage(
    job_config(snakemake),
    snakemake.input.manifest,
    model_out=snakemake.output.model,
    train_log=snakemake.output.train_log,
    metrics_out=snakemake.output.metrics,
    threads=snakemake.threads,
)
