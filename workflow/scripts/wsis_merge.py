"""Rule `wsis_masks_merge`: one COCO instances file of pseudo masks."""

from weaksam.logs import setup_rule_logging
from weaksam.wsis.stage import merge_masks_stage

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
merge_masks_stage(snakemake.input.pgt, list(snakemake.input.shards), snakemake.output[0])
