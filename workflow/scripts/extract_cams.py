"""Rule `cam_shard`: multi-scale CAMs of one shard of a split (resumable)."""

from weaksam.cam.stage import cam_stage
from weaksam.dependencies import job_config
from weaksam.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
cam_stage(
    job_config(snakemake),
    snakemake.input.manifest,
    snakemake.input.model,
    snakemake.wildcards.split,
    int(snakemake.wildcards.shard),
    snakemake.output[0],
    digest=snakemake.params.digest,
    threads=snakemake.threads,
)
