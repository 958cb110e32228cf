# Stage A: the CAM classifier (trained on image labels only) and multi-scale CAMs per split.


rule train_classifier:
    input:
        manifest=tracked(MANIFEST),
    output:
        model=f"{RESULTS}/cam/classifier.pt",
        train_log=f"{RESULTS}/cam/train_log.tsv",
        metrics=f"{RESULTS}/cam/classifier_metrics.json",
    log:
        f"{RESULTS}/logs/train_classifier.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_classifier.tsv"
    conda:
        ENV
    threads: 2 * TRAIN_GPUS
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=8000,
        runtime=240,
    params:
        digest=digest("train_classifier"),
        content=contents(MANIFEST),
    script:
        "../workflow/scripts/train_classifier.py"


rule cam_shard:
    input:
        manifest=tracked(MANIFEST),
        model=f"{RESULTS}/cam/classifier.pt",
    output:
        f"{RESULTS}/cam/{{split}}/shard-{{shard}}.h5",
    log:
        f"{RESULTS}/logs/cam_{{split}}_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cam_{{split}}_{{shard}}.tsv"
    priority: training_split_first
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    params:
        digest=digest("cam_shard"),
        # which images a shard holds: a shard file is only valid for this number of shards
        shards=CFG.compute.shards,
        content=contents(MANIFEST),
    script:
        "../workflow/scripts/extract_cams.py"


# Merges are checkpoints with outputs updated in place: a failed merge restores the previous
# store, and the jobs that read it (as `tracked` inputs) are decided again once it is written, so
# a store merged from another number of shards (byte for byte the same) reruns nothing.
checkpoint cam_merge:
    input:
        manifest=tracked(MANIFEST),
        shards=expand(f"{RESULTS}/cam/{{{{split}}}}/shard-{{shard}}.h5", shard=SHARDS),
    output:
        update(f"{RESULTS}/cam/{{split}}.h5"),
    log:
        f"{RESULTS}/logs/cam_merge_{{split}}.log",
    priority: training_split_first
    conda:
        ENV
    params:
        kind="cam",
        content=contents(MANIFEST),
    script:
        "../workflow/scripts/merge_store.py"


rule cam_figure:
    input:
        manifest=tracked(MANIFEST),
        cams=tracked(CAM_STORE),
        prompts=f"{RESULTS}/prompts/{{split}}.parquet",
    output:
        f"{RESULTS}/cam/{{split}}_overlays.png",
    log:
        f"{RESULTS}/logs/cam_figure_{{split}}.log",
    conda:
        ENV
    params:
        content=contents(MANIFEST, CAM_STORE),
    script:
        "../workflow/scripts/cam_figure.py"
