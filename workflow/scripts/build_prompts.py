"""Rule `prompts`: peak points and grid points of a split."""

from weaksam.cam.stage import prompts_stage
from weaksam.dependencies import job_config
from weaksam.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
prompts_stage(
    job_config(snakemake),
    snakemake.input.manifest,
    snakemake.input.cams,
    snakemake.wildcards.split,
    snakemake.output[0],
    digest=snakemake.params.cam_digest,
)
