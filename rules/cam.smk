# Stage A: the CAM classifier (trained on image labels only) and multi-scale CAMs per split.


rule train_classifier:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
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
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    params:
        digest=CAM_DIGEST,
    script:
        "../workflow/scripts/train_classifier.py"


rule cam_shard:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
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
        digest=CAM_DIGEST,
    script:
        "../workflow/scripts/extract_cams.py"


rule cam_merge:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        shards=expand(f"{RESULTS}/cam/{{{{split}}}}/shard-{{shard}}.h5", shard=SHARDS),
    output:
        f"{RESULTS}/cam/{{split}}.h5",
    log:
        f"{RESULTS}/logs/cam_merge_{{split}}.log",
    priority: training_split_first
    conda:
        ENV
    params:
        kind="cam",
    script:
        "../workflow/scripts/merge_store.py"


rule cam_figure:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        cams=f"{RESULTS}/cam/{{split}}.h5",
        prompts=f"{RESULTS}/prompts/{{split}}.parquet",
    output:
        f"{RESULTS}/cam/{{split}}_overlays.png",
    log:
        f"{RESULTS}/logs/cam_figure_{{split}}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/cam_figure.py"
