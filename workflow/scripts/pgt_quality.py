"""Rule `pgt_quality`: the pseudo ground truth's precision / recall against the ground truth."""

from weaksam.dependencies import job_config
from weaksam.logs import setup_rule_logging
from weaksam.pgt.stage import pgt_quality_stage

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
pgt_quality_stage(
    job_config(snakemake),
    snakemake.input.manifest,
    snakemake.input.detections,
    snakemake.input.pgt,
    snakemake.output[0],
    gt_path=snakemake.input.gt or None,
)
