# Stage H: pseudo ground truth from each WSOD head's detections on the training split, and its
# quality against the ground truth (a rule of its own: evaluation keys rerun only the quality).


rule pgt:
    input:
        manifest=tracked(MANIFEST),
        detections=f"{RESULTS}/wsod/{{head}}/detections_{TRAIN_SPLIT}.json",
    output:
        f"{RESULTS}/pgt/{{head}}/pgt.json",
    log:
        f"{RESULTS}/logs/pgt_{{head}}.log",
    conda:
        ENV
    params:
        digest=digest("pgt"),
        content=contents(MANIFEST),
    script:
        "../workflow/scripts/pgt.py"


rule pgt_quality:
    input:
        manifest=tracked(MANIFEST),
        detections=f"{RESULTS}/wsod/{{head}}/detections_{TRAIN_SPLIT}.json",
        pgt=f"{RESULTS}/pgt/{{head}}/pgt.json",
        gt=train_ground_truth(),
    output:
        f"{RESULTS}/pgt/{{head}}/quality.json",
    log:
        f"{RESULTS}/logs/pgt_quality_{{head}}.log",
    conda:
        ENV
    params:
        digest=digest("pgt_quality"),
        content=contents(MANIFEST, TRAIN_GT),
    script:
        "../workflow/scripts/pgt_quality.py"
