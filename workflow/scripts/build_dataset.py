"""Rule `dataset`: manifest, skipped.tsv and COCO ground truth."""

from pathlib import Path

from weaksam.config import load_config
from weaksam.data.build import build_dataset
from weaksam.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
cfg = load_config(snakemake.config).dataset
source = Path(snakemake.input.source[0]) if snakemake.input.source else None
build_dataset(cfg, Path(snakemake.output.manifest).parent, source_root=source)
