# weaksam: WeakSAM (arXiv 2402.14812) as a Snakemake workflow.
# The config is validated against config/schema.yaml before any rule is defined.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/assets.smk"
include: "rules/cam.smk"
include: "rules/prompts.smk"
include: "rules/proposals.smk"
include: "rules/wsod.smk"
include: "rules/pgt.smk"
include: "rules/retrain.smk"
include: "rules/wsis.smk"
include: "rules/detr.smk"
include: "rules/oracles.smk"
include: "rules/predict.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        dataset_outputs(),
        asset_outputs(),
        cam_outputs(),
        proposal_outputs(),
        wsod_outputs(),
        pgt_outputs(),
        retrain_outputs(),
        wsis_outputs(),
        predict_outputs(),
        rules.report_figures.output,
