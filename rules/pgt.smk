# Stage H: pseudo ground truth from each WSOD head's detections on the training split.


rule pgt:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        detections=f"{RESULTS}/wsod/{{head}}/detections_{TRAIN_SPLIT}.json",
        gt=train_ground_truth(),
    output:
        pgt=f"{RESULTS}/pgt/{{head}}/pgt.json",
        quality=f"{RESULTS}/pgt/{{head}}/quality.json",
    log:
        f"{RESULTS}/logs/pgt_{{head}}.log",
    conda:
        ENV
    params:
        pgt=section_digest(CFG.pgt, CFG.evaluation.iou),
    script:
        "../workflow/scripts/pgt.py"
