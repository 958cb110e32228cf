"""Rule `model_card`: a Markdown card next to a retrained model."""

from pathlib import Path

from weaksam.logs import setup_rule_logging
from weaksam.retrain.model_card import model_card

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
text = model_card(
    model_path=snakemake.input.model,
    manifest_path=snakemake.input.manifest,
    instances_path=snakemake.input.instances,
    pgt_quality_path=snakemake.input.get("quality"),
    metrics_path=snakemake.input.get("metrics"),
    digest=snakemake.params.digest,
    repo=Path(snakemake.scriptdir).parents[1],
)
Path(snakemake.output[0]).write_text(text)
