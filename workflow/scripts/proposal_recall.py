"""Rules `*_recall`: recall of a proposal store against the ground truth."""

from weaksam.dependencies import job_config
from weaksam.logs import setup_rule_logging
from weaksam.proposals.stage import recall_stage

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
recall_stage(
    job_config(snakemake),
    snakemake.input.manifest,
    snakemake.input.store,
    snakemake.input.gt,
    snakemake.wildcards.split,
    snakemake.output[0],
)
