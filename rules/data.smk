# Data stage: the shapes generator, and the manifest + COCO ground truth of any dataset.


rule shapes:
    output:
        directory(f"{RESULTS}/source"),
    log:
        f"{RESULTS}/logs/shapes.log",
    conda:
        ENV
    params:
        digest=section_digest(CFG.dataset.shapes),
    script:
        "../workflow/scripts/generate_shapes.py"


rule dataset:
    input:
        source=dataset_source(),
    output:
        manifest=f"{RESULTS}/manifest.parquet",
        skipped=f"{RESULTS}/skipped.tsv",
        gt=(
            [f"{RESULTS}/gt/{split}.json" for split in SPLITS]
            if CFG.dataset.has_ground_truth
            else []
        ),
    log:
        f"{RESULTS}/logs/dataset.log",
    conda:
        ENV
    params:
        digest=section_digest(CFG.dataset),
    script:
        "../workflow/scripts/build_dataset.py"
