# Stage I: Faster R-CNN trained on each head's pseudo ground truth, with RoI drop (and, for the
# ablation, without: detector/{head}/no_roi_drop/), evaluated on the test split.


rule retrain_train:
    input:
        manifest=tracked(MANIFEST),
        pgt=f"{RESULTS}/pgt/{{head}}/pgt.json",
    output:
        model=f"{RESULTS}/detector/{{head}}/model.pt",
        train_log=f"{RESULTS}/detector/{{head}}/train_log.tsv",
    log:
        f"{RESULTS}/logs/retrain_{{head}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/retrain_{{head}}.tsv"
    conda:
        ENV
    threads: DETECTOR_THREADS * TRAIN_GPUS
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=32000,
        runtime=1440,
    params:
        digest=digest("retrain_train"),
        roi_drop=True,
        content=contents(MANIFEST),
    script:
        "../workflow/scripts/retrain_train.py"


use rule retrain_train as retrain_train_no_roi_drop with:
    output:
        model=f"{RESULTS}/detector/{{head}}/no_roi_drop/model.pt",
        train_log=f"{RESULTS}/detector/{{head}}/no_roi_drop/train_log.tsv",
    log:
        f"{RESULTS}/logs/retrain_{{head}}_no_roi_drop.log",
    benchmark:
        f"{RESULTS}/benchmarks/retrain_{{head}}_no_roi_drop.tsv"
    params:
        digest=digest("retrain_train"),
        roi_drop=False,
        content=contents(MANIFEST),


rule retrain_detect:
    input:
        manifest=tracked(MANIFEST),
        model=f"{RESULTS}/detector/{{variant}}/model.pt",
    output:
        f"{RESULTS}/detector/{{variant}}/detections_{{split}}.json",
    log:
        f"{RESULTS}/logs/retrain_detect/{{variant}}_{{split}}.log",
    conda:
        ENV
    threads: DETECTOR_THREADS
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=720,
    params:
        digest=digest("retrain_detect"),
        content=contents(MANIFEST),
    script:
        "../workflow/scripts/retrain_detect.py"


rule retrain_metrics:
    input:
        gt=tracked(GT),
        detections=f"{RESULTS}/detector/{{variant}}/detections_{{split}}.json",
    output:
        f"{RESULTS}/detector/{{variant}}/metrics_{{split}}.json",
    log:
        f"{RESULTS}/logs/retrain_metrics/{{variant}}_{{split}}.log",
    conda:
        ENV
    params:
        digest=digest("retrain_metrics"),
        content=contents(GT),
    script:
        "../workflow/scripts/detection_metrics.py"


rule model_card:
    input:
        unpack(model_card_inputs),
    output:
        report(
            f"{RESULTS}/{{model}}/{{variant}}/model_card.md",
            caption="../workflow/report/model_card.rst",
            category="4. Models",
            subcategory="{model}/{variant}",
        ),
    log:
        f"{RESULTS}/logs/model_card/{{model}}_{{variant}}.log",
    conda:
        ENV
    params:
        # the card names the digest of the config keys its model was trained under
        digest=training_digest,
        content=contents(MANIFEST),
    script:
        "../workflow/scripts/model_card.py"
