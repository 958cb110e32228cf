# Data stage: the shapes generator, and the manifest + COCO ground truth of any dataset.


# A checkpoint: the dataset rule's listing of the generated folder is taken again once it is
# written.
checkpoint shapes:
    output:
        directory(f"{RESULTS}/source"),
    log:
        f"{RESULTS}/logs/shapes.log",
    conda:
        ENV
    params:
        digest=digest("shapes"),
    script:
        "../workflow/scripts/generate_shapes.py"


# A checkpoint, with outputs that are updated in place: a failed run restores the previous
# files, and the jobs that read them (as `tracked` inputs) are decided again once it is done,
# so a manifest that comes out the same reruns nothing.
checkpoint dataset:
    input:
        source=dataset_source(),
    output:
        manifest=update(MANIFEST),
        skipped=update(f"{RESULTS}/skipped.tsv"),
        gt=(
            [update(f"{RESULTS}/gt/{split}.json") for split in SPLITS]
            if CFG.dataset.has_ground_truth
            else []
        ),
    log:
        f"{RESULTS}/logs/dataset.log",
    conda:
        ENV
    params:
        digest=digest("dataset"),
        files=dataset_listing,
    script:
        "../workflow/scripts/build_dataset.py"
