# The Snakemake report's figures and tables (weaksam/report.py), drawn from the results folder:
#   snakemake --report results/{name}/report.html   (make demo runs it)


def report_stages():
    """Gallery stages this config produces, with the head each is drawn for."""
    stages = {"cam": None, "prompts": None, "proposals": None}
    if CFG.wsod.heads:
        stages["pgt"] = CFG.wsod.heads[0]
    if CFG.wsis.heads:
        stages["masks"] = CFG.wsis.heads[0]
        stages["instances"] = CFG.wsis.heads[0]
    if CFG.retrain.heads:
        stages["detections"] = CFG.retrain.heads[0]
    return stages


def report_outputs():
    caption = "../workflow/report/{}.rst"
    out = {
        "metrics": report(
            f"{RESULTS}/report/metrics.html",
            caption=caption.format("metrics"),
            category="1. Metrics",
        ),
        "recall": report(
            f"{RESULTS}/report/recall.png",
            caption=caption.format("recall"),
            category="1. Metrics",
        ),
        "losses": report(
            f"{RESULTS}/report/losses.png",
            caption=caption.format("losses"),
            category="2. Training",
        ),
    }
    for i, stage in enumerate(report_stages()):
        out[stage] = report(
            f"{RESULTS}/report/gallery_{stage}.png",
            caption=caption.format(f"gallery_{stage}"),
            category="3. Images",
            subcategory=f"{i + 1}. {stage}",
        )
    return out


rule report_figures:
    input:
        dataset_outputs(),
        cam_outputs(),
        proposal_outputs(),
        wsod_outputs(),
        pgt_outputs(),
        retrain_outputs(),
        wsis_outputs(),
    output:
        **report_outputs(),
    log:
        f"{RESULTS}/logs/report_figures.log",
    conda:
        ENV
    params:
        results=RESULTS,
        stages=report_stages(),
    script:
        "../workflow/scripts/report_figures.py"
