"""Rule `oracle_pgt`: quality of the PGT built from a head's detections ranked by an oracle
(each scored by its IoU with the ground truth), the PGT stage's upper bound."""

from weaksam.dependencies import job_config
from weaksam.logs import setup_rule_logging
from weaksam.pgt.stage import pgt_bound_stage

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
pgt_bound_stage(
    job_config(snakemake),
    snakemake.input.manifest,
    snakemake.input.detections,
    snakemake.input.gt,
    snakemake.output[0],
)
