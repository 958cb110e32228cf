# The paper's transformer retrainers: a DINO-style DETR on each head's pseudo ground truth
# (retrain.detector has dino) and Mask2Former on its SAM pseudo masks (wsis.segmenter has
# mask2former), each with its detections and metrics on the test split.


rule dino_train:
    input:
        manifest=tracked(MANIFEST),
        pgt=f"{RESULTS}/pgt/{{head}}/pgt.json",
    output:
        model=f"{RESULTS}/dino/{{head}}/model.pt",
        train_log=f"{RESULTS}/dino/{{head}}/train_log.tsv",
    log:
        f"{RESULTS}/logs/dino_{{head}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/dino_{{head}}.tsv"
    conda:
        ENV
    threads: DETECTOR_THREADS * TRAIN_GPUS
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=32000,
        runtime=1440,
    params:
        digest=digest("dino_train"),
        kind="dino",
        content=contents(MANIFEST),
    script:
        "../workflow/scripts/detr_train.py"


use rule dino_train as mask2former_train with:
    input:
        manifest=tracked(MANIFEST),
        pgt=tracked(PSEUDO_MASKS),
    output:
        model=f"{RESULTS}/mask2former/{{head}}/model.pt",
        train_log=f"{RESULTS}/mask2former/{{head}}/train_log.tsv",
    log:
        f"{RESULTS}/logs/mask2former_{{head}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/mask2former_{{head}}.tsv"
    params:
        digest=digest("mask2former_train"),
        kind="mask2former",
        content=contents(MANIFEST, PSEUDO_MASKS),


rule dino_detect:
    input:
        manifest=tracked(MANIFEST),
        model=f"{RESULTS}/dino/{{variant}}/model.pt",
    output:
        f"{RESULTS}/dino/{{variant}}/detections_{{split}}.json",
    log:
        f"{RESULTS}/logs/dino_detect/{{variant}}_{{split}}.log",
    conda:
        ENV
    threads: DETECTOR_THREADS
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=720,
    params:
        digest=digest("dino_detect"),
        kind="dino",
        content=contents(MANIFEST),
    script:
        "../workflow/scripts/detr_detect.py"


use rule dino_detect as mask2former_detect with:
    input:
        manifest=tracked(MANIFEST),
        model=f"{RESULTS}/mask2former/{{variant}}/model.pt",
    output:
        f"{RESULTS}/mask2former/{{variant}}/detections_{{split}}.json",
    log:
        f"{RESULTS}/logs/mask2former_detect/{{variant}}_{{split}}.log",
    params:
        digest=digest("mask2former_detect"),
        kind="mask2former",
        content=contents(MANIFEST),


use rule retrain_metrics as dino_metrics with:
    input:
        gt=tracked(GT),
        detections=f"{RESULTS}/dino/{{variant}}/detections_{{split}}.json",
    output:
        f"{RESULTS}/dino/{{variant}}/metrics_{{split}}.json",
    log:
        f"{RESULTS}/logs/dino_metrics/{{variant}}_{{split}}.log",
    params:
        digest=digest("dino_metrics"),
        content=contents(GT),


use rule retrain_metrics as mask2former_metrics with:
    input:
        gt=tracked(GT),
        detections=f"{RESULTS}/mask2former/{{variant}}/detections_{{split}}.json",
    output:
        f"{RESULTS}/mask2former/{{variant}}/metrics_{{split}}.json",
    log:
        f"{RESULTS}/logs/mask2former_metrics/{{variant}}_{{split}}.log",
    params:
        digest=digest("mask2former_metrics"),
        content=contents(GT),
