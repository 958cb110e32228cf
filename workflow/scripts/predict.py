"""Rule `predict`: a retrained model on the images of `predict.images`."""

from pathlib import Path

from weaksam.dependencies import job_config
from weaksam.io import write_json
from weaksam.logs import setup_rule_logging
from weaksam.predict import predict
from weaksam.retrain import INFERENCE_KEYS

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
cfg = job_config(snakemake)
result = predict(
    Path(snakemake.input.model),
    [Path(snakemake.input.images)],
    device=cfg.compute.device,
    # the config's test pass, as the detection rules run it
    inference={k: getattr(cfg.retrain, k) for k in INFERENCE_KEYS},
    score_threshold=cfg.predict.score_threshold,
    draw_dir=Path(snakemake.output.drawn),
)
Path(snakemake.output.drawn).mkdir(parents=True, exist_ok=True)
write_json(snakemake.output.detections, result.to_json())
