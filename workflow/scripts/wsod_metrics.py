"""Rule `wsod_metrics`: AP50 (11-point and area), CorLoc and COCO AP of WSOD detections."""

from weaksam.config import load_config
from weaksam.logs import setup_rule_logging
from weaksam.wsod.stage import metrics_stage

setup_rule_logging(snakemake.log[0])
metrics_stage(
    load_config(snakemake.config),
    snakemake.input.gt,
    snakemake.input.detections,
    snakemake.output[0],
)
