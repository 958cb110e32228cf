"""Rule `pgt`: adaptive pseudo ground truth from WSOD detections."""

from weaksam.dependencies import job_config
from weaksam.logs import setup_rule_logging
from weaksam.pgt.stage import pgt_stage

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
pgt_stage(
    job_config(snakemake),
    snakemake.input.manifest,
    snakemake.input.detections,
    snakemake.output[0],
)
