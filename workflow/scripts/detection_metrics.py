"""Rules `*_metrics`: AP50 (11-point and area), CorLoc and COCO AP of a detections file."""

from weaksam.dependencies import job_config
from weaksam.evaluation.stage import metrics_stage
from weaksam.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
metrics_stage(
    job_config(snakemake),
    snakemake.input.gt,
    snakemake.input.detections,
    snakemake.output[0],
)
