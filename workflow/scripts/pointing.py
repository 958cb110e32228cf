"""Rule `pointing`: share of peak points inside a ground-truth box of their class."""

from weaksam.cam.stage import pointing_stage
from weaksam.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
pointing_stage(
    snakemake.input.manifest,
    snakemake.input.prompts,
    snakemake.input.gt,
    snakemake.wildcards.split,
    snakemake.output[0],
)
