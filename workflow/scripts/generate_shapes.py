"""Rule `shapes`: generate the shapes dataset in VOC layout."""

from pathlib import Path

from weaksam.data.shapes import generate_shapes
from weaksam.dependencies import job_config
from weaksam.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
cfg = job_config(snakemake).dataset
generate_shapes(cfg.shapes, Path(snakemake.output[0]), cfg.splits)
