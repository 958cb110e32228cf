# The retrained models on the images of `predict.images` (off unless set).


def predict_outputs():
    """Detections (and drawings) of every chosen model on `predict.images`."""
    if CFG.predict.images is None:
        return []
    heads = {"detector": CFG.retrain.heads, "maskrcnn": CFG.wsis.heads}
    return [
        f"{RESULTS}/predict/{model}/{head}/detections.json"
        for model in CFG.predict.models
        for head in heads[model]
    ]


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
        score_threshold=CFG.predict.score_threshold,
        device=CFG.compute.device,
    script:
        "../workflow/scripts/predict.py"
