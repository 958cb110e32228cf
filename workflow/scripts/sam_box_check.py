"""Rule `sam_box_check`: SAM alone, ground-truth boxes as prompts, mean IoU with their masks."""

from weaksam.dependencies import job_config
from weaksam.logs import setup_rule_logging
from weaksam.wsis.stage import gt_box_check_stage

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
gt_box_check_stage(
    job_config(snakemake),
    snakemake.input.manifest,
    snakemake.input.gt,
    snakemake.wildcards.split,
    snakemake.output[0],
    threads=snakemake.threads,
)
