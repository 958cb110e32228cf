"""Rule `wsis_masks_shard`: SAM masks for the pseudo boxes of one shard of the training split."""

from weaksam.dependencies import job_config
from weaksam.logs import setup_rule_logging
from weaksam.wsis.stage import masks_shard_stage

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
masks_shard_stage(
    job_config(snakemake),
    snakemake.input.manifest,
    snakemake.input.pgt,
    int(snakemake.wildcards.shard),
    snakemake.output[0],
    threads=snakemake.threads,
)
