# Stages C-E: SAM proposals from peak and grid prompts, Selective Search for comparison, recall.


rule proposals_shard:
    input:
        manifest=tracked(MANIFEST),
        prompts=f"{RESULTS}/prompts/{{split}}.parquet",
        sam=sam_inputs(),
    output:
        f"{RESULTS}/proposals/{{split}}/shard-{{shard}}.h5",
    log:
        f"{RESULTS}/logs/proposals_{{split}}_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/proposals_{{split}}_{{shard}}.tsv"
    priority: training_split_first
    conda:
        ENV
    threads: SHARD_THREADS
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=720,
    params:
        digest=digest("proposals_shard"),
        shards=CFG.compute.shards,
        content=contents(MANIFEST),
    script:
        "../workflow/scripts/sam_proposals.py"


checkpoint proposals_merge:
    input:
        manifest=tracked(MANIFEST),
        shards=expand(
            f"{RESULTS}/proposals/{{{{split}}}}/shard-{{shard}}.h5", shard=SHARDS
        ),
    output:
        update(PROPOSALS),
    log:
        f"{RESULTS}/logs/proposals_merge_{{split}}.log",
    priority: training_split_first
    conda:
        ENV
    params:
        kind="proposals",
        content=contents(MANIFEST),
    script:
        "../workflow/scripts/merge_store.py"


rule selective_search_shard:
    input:
        manifest=tracked(MANIFEST),
    output:
        f"{RESULTS}/proposals/selective_search/{{split}}/shard-{{shard}}.h5",
    log:
        f"{RESULTS}/logs/selective_search_{{split}}_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/selective_search_{{split}}_{{shard}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=720,
    params:
        digest=digest("selective_search_shard"),
        shards=CFG.compute.shards,
        content=contents(MANIFEST),
    script:
        "../workflow/scripts/selective_search.py"


checkpoint selective_search_merge:
    input:
        manifest=tracked(MANIFEST),
        shards=expand(
            f"{RESULTS}/proposals/selective_search/{{{{split}}}}/shard-{{shard}}.h5",
            shard=SHARDS,
        ),
    output:
        update(SS_PROPOSALS),
    log:
        f"{RESULTS}/logs/selective_search_merge_{{split}}.log",
    conda:
        ENV
    params:
        kind="proposals",
        content=contents(MANIFEST),
    script:
        "../workflow/scripts/merge_store.py"


rule proposal_recall:
    input:
        manifest=tracked(MANIFEST),
        store=tracked(PROPOSALS),
        gt=tracked(GT),
    output:
        f"{RESULTS}/proposals/{{split}}.recall.json",
    log:
        f"{RESULTS}/logs/recall_{{split}}.log",
    conda:
        ENV
    params:
        digest=digest("proposal_recall"),
        content=contents(MANIFEST, PROPOSALS, GT),
    script:
        "../workflow/scripts/proposal_recall.py"


rule selective_search_recall:
    input:
        manifest=tracked(MANIFEST),
        store=tracked(SS_PROPOSALS),
        gt=tracked(GT),
    output:
        f"{RESULTS}/proposals/selective_search/{{split}}.recall.json",
    log:
        f"{RESULTS}/logs/recall_selective_search_{{split}}.log",
    conda:
        ENV
    params:
        digest=digest("selective_search_recall"),
        content=contents(MANIFEST, SS_PROPOSALS, GT),
    script:
        "../workflow/scripts/proposal_recall.py"
