"""Rule `dataset`: manifest, skipped.tsv and COCO ground truth."""

from pathlib import Path

from weaksam.config import ConfigError
from weaksam.data.build import build_dataset
from weaksam.data.records import DatasetError
from weaksam.dependencies import job_config
from weaksam.logs import input_errors, setup_rule_logging

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
with input_errors(DatasetError, ConfigError):  # one line, in the log too, no traceback
    cfg = job_config(snakemake).dataset
    source = Path(snakemake.input.source[0]) if snakemake.input.source else None
    build_dataset(cfg, Path(snakemake.output.manifest).parent, source_root=source)
