"""Rule `cam_figure`: CAM overlays with peak points for a few images of a split."""

from weaksam.cam.stage import figure_stage
from weaksam.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
figure_stage(
    snakemake.input.manifest,
    snakemake.input.cams,
    snakemake.input.prompts,
    snakemake.wildcards.split,
    snakemake.output[0],
)
