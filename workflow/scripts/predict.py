"""Rule `predict`: a retrained model on the images of `predict.images`."""

from pathlib import Path

from weaksam.io import write_json
from weaksam.logs import setup_rule_logging
from weaksam.predict import predict

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
result = predict(
    Path(snakemake.input.model),
    [Path(snakemake.input.images)],
    device=snakemake.params.device,
    score_threshold=snakemake.params.score_threshold,
    draw_dir=Path(snakemake.output.drawn),
)
Path(snakemake.output.drawn).mkdir(parents=True, exist_ok=True)
write_json(snakemake.output.detections, result.to_json())
