"""Rule `wsis_quality`: mean IoU of the pseudo masks with the ground-truth masks per class."""

from weaksam.dependencies import job_config
from weaksam.logs import setup_rule_logging
from weaksam.wsis.stage import masks_quality_stage

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
masks_quality_stage(
    job_config(snakemake),
    snakemake.input.manifest,
    snakemake.input.masks,
    snakemake.input.gt,
    snakemake.output[0],
)
