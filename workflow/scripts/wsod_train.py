"""Rules `wsod_train*`: train one WSOD head on a proposal store (checkpointed, resumable)."""

from pathlib import Path

from weaksam.config import load_config
from weaksam.logs import setup_rule_logging
from weaksam.wsod.stage import train_stage

setup_rule_logging(snakemake.log[0])
model = Path(snakemake.output.model)
train_stage(
    load_config(snakemake.config),
    snakemake.input.manifest,
    snakemake.input.proposals,
    snakemake.wildcards.head,
    str(model),
    digest=snakemake.params.proposals_digest,
    work=str(model.with_name("checkpoint.pt")),
    train_log=snakemake.output.train_log,
    threads=snakemake.threads,
)
