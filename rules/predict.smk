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
