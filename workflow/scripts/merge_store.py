"""Rules `*_merge`: merge per-shard HDF5 stores in manifest order."""

from weaksam.cam.stage import merge_stage
from weaksam.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
merge_stage(
    snakemake.input.manifest,
    list(snakemake.input.shards),
    snakemake.wildcards.split,
    snakemake.output[0],
    kind=snakemake.params.kind,
)
