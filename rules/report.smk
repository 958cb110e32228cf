# The Snakemake report's figures and tables (weaksam/report.py), drawn from the results folder:
#   snakemake --report results/{name}/report.html   (make demo runs it)


REPORT_INPUTS = [
    *dataset_outputs(),
    *cam_outputs(),
    *proposal_outputs(),
    *wsod_outputs(),
    *pgt_outputs(),
    *retrain_outputs(),
    *wsis_outputs(),
    *(oracle_outputs() if CFG.evaluation.stage_bounds else []),
]


rule report_figures:
    input:
        track_all(REPORT_INPUTS),
    output:
        **report_outputs(),
    log:
        f"{RESULTS}/logs/report_figures.log",
    conda:
        ENV
    params:
        content=contents(*[f for f in REPORT_INPUTS if is_tracked(f)]),
        results=lambda w, output: str(Path(output.metrics).parents[1]),
        stages=report_stages(),
    script:
        "../workflow/scripts/report_figures.py"
