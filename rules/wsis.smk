# Stage J: SAM masks for each head's pseudo boxes (sharded, merged), their quality, Mask R-CNN
# trained on them, mask AP; and the SAM-alone check with ground-truth boxes as prompts.


rule wsis_masks_shard:
    input:
        manifest=tracked(MANIFEST),
        pgt=f"{RESULTS}/pgt/{{head}}/pgt.json",
        sam=sam_inputs(),
    output:
        f"{RESULTS}/wsis/{{head}}/shard-{{shard}}.json",
    log:
        f"{RESULTS}/logs/wsis_masks_{{head}}_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/wsis_masks_{{head}}_{{shard}}.tsv"
    # the pseudo masks and Mask R-CNN are the longer branch after the PGT: start them before
    # the Faster R-CNN when both wait for cores
    priority: 1
    conda:
        ENV
    threads: SHARD_THREADS
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=720,
    params:
        digest=digest("wsis_masks_shard"),
        shards=CFG.compute.shards,
        content=contents(MANIFEST),
    script:
        "../workflow/scripts/wsis_masks.py"


checkpoint wsis_masks_merge:
    input:
        pgt=f"{RESULTS}/pgt/{{head}}/pgt.json",
        shards=expand(f"{RESULTS}/wsis/{{{{head}}}}/shard-{{shard}}.json", shard=SHARDS),
    output:
        update(PSEUDO_MASKS),
    log:
        f"{RESULTS}/logs/wsis_merge_{{head}}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/wsis_merge.py"


rule wsis_quality:
    input:
        manifest=tracked(MANIFEST),
        masks=tracked(PSEUDO_MASKS),
        gt=tracked(TRAIN_GT),
    output:
        f"{RESULTS}/wsis/{{head}}/quality.json",
    log:
        f"{RESULTS}/logs/wsis_quality_{{head}}.log",
    conda:
        ENV
    params:
        content=contents(MANIFEST, PSEUDO_MASKS, TRAIN_GT),
    script:
        "../workflow/scripts/wsis_quality.py"


rule maskrcnn_train:
    input:
        manifest=tracked(MANIFEST),
        masks=tracked(PSEUDO_MASKS),
    output:
        model=f"{RESULTS}/maskrcnn/{{head}}/model.pt",
        train_log=f"{RESULTS}/maskrcnn/{{head}}/train_log.tsv",
    log:
        f"{RESULTS}/logs/maskrcnn_{{head}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/maskrcnn_{{head}}.tsv"
    priority: 1
    conda:
        ENV
    threads: DETECTOR_THREADS * TRAIN_GPUS
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=32000,
        runtime=1440,
    params:
        digest=digest("maskrcnn_train"),
        roi_drop=CFG.wsis.roi_drop,
        content=contents(MANIFEST, PSEUDO_MASKS),
    script:
        "../workflow/scripts/maskrcnn_train.py"


use rule retrain_detect as maskrcnn_detect with:
    input:
        manifest=tracked(MANIFEST),
        model=f"{RESULTS}/maskrcnn/{{variant}}/model.pt",
    output:
        f"{RESULTS}/maskrcnn/{{variant}}/detections_{{split}}.json",
    log:
        f"{RESULTS}/logs/maskrcnn_detect/{{variant}}_{{split}}.log",
    params:
        digest=digest("maskrcnn_detect"),
        content=contents(MANIFEST),


use rule retrain_metrics as maskrcnn_metrics with:
    input:
        gt=tracked(GT),
        detections=f"{RESULTS}/maskrcnn/{{variant}}/detections_{{split}}.json",
    output:
        f"{RESULTS}/maskrcnn/{{variant}}/metrics_{{split}}.json",
    log:
        f"{RESULTS}/logs/maskrcnn_metrics/{{variant}}_{{split}}.log",


rule sam_box_check:
    input:
        manifest=tracked(MANIFEST),
        gt=tracked(GT),
        sam=sam_inputs(),
    output:
        f"{RESULTS}/wsis/gt_box_check_{{split}}.json",
    log:
        f"{RESULTS}/logs/sam_box_check_{{split}}.log",
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=720,
    params:
        digest=digest("sam_box_check"),
        content=contents(MANIFEST, GT),
    script:
        "../workflow/scripts/sam_box_check.py"
