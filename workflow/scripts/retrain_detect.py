"""Rule `retrain_detect`: a retrained detector's detections of a split (COCO results)."""

from weaksam.dependencies import job_config
from weaksam.logs import setup_rule_logging
from weaksam.retrain.stage import detect_stage

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
detect_stage(
    job_config(snakemake),
    snakemake.input.manifest,
    snakemake.input.model,
    snakemake.wildcards.split,
    snakemake.output[0],
    threads=snakemake.threads,
)
