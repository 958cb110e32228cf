# The retrained models on the images of `predict.images` (off unless set).


rule predict:
    input:
        model=f"{RESULTS}/{{model}}/{{head}}/model.pt",
        images=CFG.predict.images or [],
    output:
        detections=f"{RESULTS}/predict/{{model}}/{{head}}/detections.json",
        drawn=directory(f"{RESULTS}/predict/{{model}}/{{head}}/drawn"),
    log:
        f"{RESULTS}/logs/predict/{{model}}_{{head}}.log",
    wildcard_constraints:
        model="detector|maskrcnn",
    conda:
        ENV
    threads: DETECTOR_THREADS
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=720,
    params:
        digest=digest("predict"),
    script:
        "../workflow/scripts/predict.py"


use rule predict as predict_dino with:
    input:
        model=f"{RESULTS}/dino/{{head}}/model.pt",
        images=CFG.predict.images or [],
    output:
        detections=f"{RESULTS}/predict/dino/{{head}}/detections.json",
        drawn=directory(f"{RESULTS}/predict/dino/{{head}}/drawn"),
    log:
        f"{RESULTS}/logs/predict/dino_{{head}}.log",
    params:
        digest=digest("predict_dino"),


use rule predict as predict_mask2former with:
    input:
        model=f"{RESULTS}/mask2former/{{head}}/model.pt",
        images=CFG.predict.images or [],
    output:
        detections=f"{RESULTS}/predict/mask2former/{{head}}/detections.json",
        drawn=directory(f"{RESULTS}/predict/mask2former/{{head}}/drawn"),
    log:
        f"{RESULTS}/logs/predict/mask2former_{{head}}.log",
    params:
        digest=digest("predict_mask2former"),
