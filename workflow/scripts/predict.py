"""Rules `predict`, `predict_dino`, `predict_mask2former`: a retrained model on the images of
`predict.images`."""

from pathlib import Path

from weaksam.dependencies import job_config
from weaksam.detr import DINO_INFERENCE_KEYS, MASK2FORMER_INFERENCE_KEYS
from weaksam.io import write_json
from weaksam.logs import setup_rule_logging
from weaksam.predict import predict
from weaksam.retrain import INFERENCE_KEYS

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
cfg = job_config(snakemake)
# the config's test pass, as the detection rules run it
if snakemake.rule == "predict_dino":
    section, keys = cfg.retrain.dino, [k.rsplit(".", 1)[1] for k in DINO_INFERENCE_KEYS]
elif snakemake.rule == "predict_mask2former":
    section, keys = cfg.wsis.mask2former, [k.rsplit(".", 1)[1] for k in MASK2FORMER_INFERENCE_KEYS]
else:
    section, keys = cfg.retrain, list(INFERENCE_KEYS)
result = predict(
    Path(snakemake.input.model),
    [Path(snakemake.input.images)],
    device=cfg.compute.device,
    inference={k: getattr(section, k) for k in keys},
    score_threshold=cfg.predict.score_threshold,
    draw_dir=Path(snakemake.output.drawn),
)
Path(snakemake.output.drawn).mkdir(parents=True, exist_ok=True)
write_json(snakemake.output.detections, result.to_json())
