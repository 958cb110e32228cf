# The Snakemake report's figures and tables (weaksam/report.py), drawn from the results folder:
#   snakemake --report results/{name}/report.html   (make demo runs it)


rule report_figures:
    input:
        dataset_outputs(),
        cam_outputs(),
        proposal_outputs(),
        wsod_outputs(),
        pgt_outputs(),
        retrain_outputs(),
        wsis_outputs(),
        oracle_outputs() if CFG.evaluation.stage_bounds else [],
    output:
        **report_outputs(),
    log:
        f"{RESULTS}/logs/report_figures.log",
    conda:
        ENV
    params:
        results=lambda w, output: str(Path(output.metrics).parents[1]),
        stages=report_stages(),
    script:
        "../workflow/scripts/report_figures.py"
