# Upper bounds of the stages (DESIGN.md section 9): each replaces one stage's input by ground
# truth, so the report can show which stage loses the most. Not part of `all`; `snakemake
# oracles` (or bench/quality.py) builds them. Every bound is evaluated like the stage itself.


rule oracle_proposals:
    input:
        manifest=tracked(MANIFEST),
        proposals=tracked(PROPOSALS),
        gt=tracked(GT),
    output:
        f"{RESULTS}/oracle/proposals/{{split}}.h5",
    log:
        f"{RESULTS}/logs/oracle_proposals_{{split}}.log",
    conda:
        ENV
    params:
        digest=store_digest("proposals_shard", this_split),
        oracle_digest=store_digest("proposals_shard", this_split, "ground_truth"),
        content=contents(MANIFEST, PROPOSALS, GT),
    script:
        "../workflow/scripts/oracle_proposals.py"


use rule wsod_train as oracle_wsod_train with:
    input:
        manifest=tracked(MANIFEST),
        proposals=f"{RESULTS}/oracle/proposals/{TRAIN_SPLIT}.h5",
    output:
        model=f"{RESULTS}/oracle/wsod/{{head}}/model.pt",
        train_log=f"{RESULTS}/oracle/wsod/{{head}}/train_log.tsv",
    log:
        f"{RESULTS}/logs/oracle_wsod_train_{{head}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/oracle_wsod_train_{{head}}.tsv"
    params:
        proposals_digest=store_digest("proposals_shard", train_split, "ground_truth"),
        digest=digest("wsod_train"),
        content=contents(MANIFEST),


use rule wsod_detect as oracle_wsod_detect with:
    input:
        manifest=tracked(MANIFEST),
        model=f"{RESULTS}/oracle/wsod/{{head}}/model.pt",
        proposals=f"{RESULTS}/oracle/proposals/{{split}}.h5",
    output:
        f"{RESULTS}/oracle/wsod/{{head}}/detections_{{split}}.json",
    log:
        f"{RESULTS}/logs/oracle_wsod_detect_{{head}}_{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/oracle_wsod_detect_{{head}}_{{split}}.tsv"
    params:
        proposals_digest=store_digest("proposals_shard", this_split, "ground_truth"),
        digest=digest("wsod_detect"),
        content=contents(MANIFEST),


use rule wsod_metrics as oracle_wsod_metrics with:
    input:
        gt=tracked(GT),
        detections=f"{RESULTS}/oracle/wsod/{{head}}/detections_{{split}}.json",
    output:
        f"{RESULTS}/oracle/wsod/{{head}}/metrics_{{split}}.json",
    log:
        f"{RESULTS}/logs/oracle_wsod_metrics/{{head}}_{{split}}.log",


rule oracle_pgt:
    input:
        manifest=tracked(MANIFEST),
        detections=f"{RESULTS}/wsod/{{head}}/detections_{TRAIN_SPLIT}.json",
        gt=tracked(TRAIN_GT),
    output:
        f"{RESULTS}/oracle/pgt/{{head}}/quality.json",
    log:
        f"{RESULTS}/logs/oracle_pgt_{{head}}.log",
    conda:
        ENV
    params:
        digest=digest("oracle_pgt"),
        content=contents(MANIFEST, TRAIN_GT),
    script:
        "../workflow/scripts/oracle_pgt.py"


use rule retrain_train as oracle_detector_train with:
    input:
        manifest=tracked(MANIFEST),
        pgt=tracked(TRAIN_GT),
    output:
        model=f"{RESULTS}/oracle/detector/model.pt",
        train_log=f"{RESULTS}/oracle/detector/train_log.tsv",
    log:
        f"{RESULTS}/logs/oracle_detector_train.log",
    benchmark:
        f"{RESULTS}/benchmarks/oracle_detector_train.tsv"
    params:
        digest=digest("retrain_train"),
        roi_drop=True,
        content=contents(MANIFEST, TRAIN_GT),


use rule maskrcnn_train as oracle_maskrcnn_train with:
    input:
        manifest=tracked(MANIFEST),
        masks=tracked(TRAIN_GT),
    output:
        model=f"{RESULTS}/oracle/maskrcnn/model.pt",
        train_log=f"{RESULTS}/oracle/maskrcnn/train_log.tsv",
    log:
        f"{RESULTS}/logs/oracle_maskrcnn_train.log",
    benchmark:
        f"{RESULTS}/benchmarks/oracle_maskrcnn_train.tsv"
    params:
        digest=digest("maskrcnn_train"),
        roi_drop=CFG.wsis.roi_drop,
        content=contents(MANIFEST, TRAIN_GT),


use rule retrain_detect as oracle_retrain_detect with:
    input:
        manifest=tracked(MANIFEST),
        model=f"{RESULTS}/oracle/{{model}}/model.pt",
    output:
        f"{RESULTS}/oracle/{{model}}/detections_{{split}}.json",
    log:
        f"{RESULTS}/logs/oracle_detect/{{model}}_{{split}}.log",
    params:
        digest=digest("oracle_retrain_detect"),
        content=contents(MANIFEST),


use rule retrain_metrics as oracle_retrain_metrics with:
    input:
        gt=tracked(GT),
        detections=f"{RESULTS}/oracle/{{model}}/detections_{{split}}.json",
    output:
        f"{RESULTS}/oracle/{{model}}/metrics_{{split}}.json",
    log:
        f"{RESULTS}/logs/oracle_metrics/{{model}}_{{split}}.log",


rule oracles:
    input:
        oracle_outputs(),
