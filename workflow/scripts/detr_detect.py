"""Rules `dino_detect`, `mask2former_detect`: a transformer retrainer's detections of a split
(COCO results; Mask2Former's with RLE masks)."""

from weaksam.dependencies import job_config
from weaksam.detr.stage import detect_stage
from weaksam.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
detect_stage(
    job_config(snakemake),
    snakemake.params.kind,
    snakemake.input.manifest,
    snakemake.input.model,
    snakemake.wildcards.split,
    snakemake.output[0],
    threads=snakemake.threads,
)
