"""Rule `oracle_proposals`: a split's proposals followed by its ground-truth boxes (the WSOD
stage's upper bound input)."""

from weaksam.logs import setup_rule_logging
from weaksam.proposals.stage import oracle_proposals_stage

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
oracle_proposals_stage(
    snakemake.input.manifest,
    snakemake.input.proposals,
    snakemake.input.gt,
    snakemake.wildcards.split,
    snakemake.output[0],
    digest=snakemake.params.digest,
    oracle_digest=snakemake.params.oracle_digest,
)
