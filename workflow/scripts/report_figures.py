"""Rule `report_figures`: the metrics tables, recall and loss curves and image galleries of the
Snakemake report."""

import logging
import time
from pathlib import Path

from weaksam.dependencies import job_config
from weaksam.logs import setup_rule_logging
from weaksam.report import gallery, loss_figure, metrics_html, recall_figure

setup_rule_logging(snakemake.log[0], rule=snakemake.rule, outputs=snakemake.output)
start = time.perf_counter()
results = Path(snakemake.params.results)
metrics_html(results, snakemake.output.metrics, job_config(snakemake))
recall_figure(results, snakemake.output.recall)
loss_figure(results, snakemake.output.losses)
for stage, head in snakemake.params.stages.items():
    gallery(results, stage, snakemake.output[stage], head=head or "mist")
logging.getLogger("weaksam.report").info(
    "report figures: %d files in %s, %.1f s",
    len(snakemake.output),
    results / "report",
    time.perf_counter() - start,
)
