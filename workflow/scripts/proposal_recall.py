"""Rules `*_recall`: recall of a proposal store against the ground truth."""

from weaksam.config import load_config
from weaksam.logs import setup_rule_logging
from weaksam.proposals.stage import recall_stage

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
recall_stage(
    load_config(snakemake.config),
    snakemake.input.manifest,
    snakemake.input.store,
    snakemake.input.gt,
    snakemake.wildcards.split,
    snakemake.output[0],
)
