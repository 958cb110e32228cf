# Stages F-G: WSOD heads (WSDDN, OICR, MIST) trained on the WeakSAM proposals (wsod/{head}/) and,
# for comparison, on Selective Search proposals (wsod/selective_search/{head}/); detections on
# both splits (the training split's feed the pseudo ground truth) and their metrics.


rule wsod_train:
    input:
        manifest=tracked(MANIFEST),
        proposals=tracked(TRAIN_PROPOSALS),
    output:
        model=f"{RESULTS}/wsod/{{head}}/model.pt",
        train_log=f"{RESULTS}/wsod/{{head}}/train_log.tsv",
    log:
        f"{RESULTS}/logs/wsod_train_{{head}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/wsod_train_{{head}}.tsv"
    conda:
        ENV
    threads: 2 * TRAIN_GPUS
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=32000,
        runtime=1440,
    params:
        proposals_digest=store_digest("proposals_shard", train_split),
        digest=digest("wsod_train"),
        content=contents(MANIFEST, TRAIN_PROPOSALS),
    script:
        "../workflow/scripts/wsod_train.py"


use rule wsod_train as wsod_train_selective_search with:
    input:
        manifest=tracked(MANIFEST),
        proposals=tracked(TRAIN_SS_PROPOSALS),
    output:
        model=f"{RESULTS}/wsod/selective_search/{{head}}/model.pt",
        train_log=f"{RESULTS}/wsod/selective_search/{{head}}/train_log.tsv",
    log:
        f"{RESULTS}/logs/wsod_train_selective_search_{{head}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/wsod_train_selective_search_{{head}}.tsv"
    params:
        proposals_digest=store_digest("selective_search_shard", train_split),
        digest=digest("wsod_train"),
        content=contents(MANIFEST, TRAIN_SS_PROPOSALS),


rule wsod_detect:
    input:
        manifest=tracked(MANIFEST),
        model=f"{RESULTS}/wsod/{{head}}/model.pt",
        proposals=tracked(PROPOSALS),
    output:
        f"{RESULTS}/wsod/{{head}}/detections_{{split}}.json",
    log:
        f"{RESULTS}/logs/wsod_detect_{{head}}_{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/wsod_detect_{{head}}_{{split}}.tsv"
    priority: training_split_first
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=720,
    params:
        proposals_digest=store_digest("proposals_shard", this_split),
        digest=digest("wsod_detect"),
        content=contents(MANIFEST, PROPOSALS),
    script:
        "../workflow/scripts/wsod_detect.py"


use rule wsod_detect as wsod_detect_selective_search with:
    input:
        manifest=tracked(MANIFEST),
        model=f"{RESULTS}/wsod/selective_search/{{head}}/model.pt",
        proposals=tracked(SS_PROPOSALS),
    output:
        f"{RESULTS}/wsod/selective_search/{{head}}/detections_{{split}}.json",
    log:
        f"{RESULTS}/logs/wsod_detect_selective_search_{{head}}_{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/wsod_detect_selective_search_{{head}}_{{split}}.tsv"
    params:
        proposals_digest=store_digest("selective_search_shard", this_split),
        digest=digest("wsod_detect"),
        content=contents(MANIFEST, SS_PROPOSALS),


rule wsod_metrics:
    input:
        gt=tracked(GT),
        detections=f"{RESULTS}/wsod/{{path}}/detections_{{split}}.json",
    output:
        f"{RESULTS}/wsod/{{path}}/metrics_{{split}}.json",
    log:
        f"{RESULTS}/logs/wsod_metrics/{{path}}_{{split}}.log",
    conda:
        ENV
    params:
        digest=digest("wsod_metrics"),
        content=contents(GT),
    script:
        "../workflow/scripts/detection_metrics.py"


rule wsod_targets:
    input:
        wsod_outputs(),


rule wsddn:
    input:
        wsod_outputs(["wsddn"]),


rule oicr:
    input:
        wsod_outputs(["oicr"]),


rule mist:
    input:
        wsod_outputs(["mist"]),
