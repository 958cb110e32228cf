"""Rule `pgt`: adaptive pseudo ground truth from WSOD detections, with its precision / recall."""

from weaksam.config import load_config
from weaksam.logs import setup_rule_logging
from weaksam.pgt.stage import pgt_stage

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
pgt_stage(
    load_config(snakemake.config),
    snakemake.input.manifest,
    snakemake.input.detections,
    snakemake.output.pgt,
    gt_path=snakemake.input.gt or None,
    quality_out=snakemake.output.quality,
)
