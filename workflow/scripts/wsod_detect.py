"""Rules `wsod_detect*`: TTA detections of a split in COCO results format."""

from weaksam.dependencies import job_config
from weaksam.logs import setup_rule_logging
from weaksam.wsod.stage import detect_stage

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
detect_stage(
    job_config(snakemake),
    snakemake.input.manifest,
    snakemake.input.model,
    snakemake.input.proposals,
    snakemake.wildcards.split,
    snakemake.output[0],
    digest=snakemake.params.proposals_digest,
    threads=snakemake.threads,
)
