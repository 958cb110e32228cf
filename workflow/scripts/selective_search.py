"""Rule `selective_search_shard`: Selective Search proposals of one shard (resumable)."""

from weaksam.dependencies import job_config
from weaksam.logs import setup_rule_logging
from weaksam.proposals.stage import selective_search_shard_stage

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
selective_search_shard_stage(
    job_config(snakemake),
    snakemake.input.manifest,
    snakemake.wildcards.split,
    int(snakemake.wildcards.shard),
    snakemake.output[0],
    digest=snakemake.params.digest,
    threads=snakemake.threads,
)
