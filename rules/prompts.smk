# Stage B: peak points of the CAMs and the spatial grid, and how well the peaks point.


rule prompts:
    input:
        manifest=tracked(MANIFEST),
        cams=tracked(CAM_STORE),
    output:
        f"{RESULTS}/prompts/{{split}}.parquet",
    log:
        f"{RESULTS}/logs/prompts_{{split}}.log",
    priority: training_split_first
    conda:
        ENV
    params:
        digest=digest("prompts"),
        cam_digest=store_digest("cam_shard", this_split),
        content=contents(MANIFEST, CAM_STORE),
    script:
        "../workflow/scripts/build_prompts.py"


rule pointing:
    input:
        manifest=tracked(MANIFEST),
        prompts=f"{RESULTS}/prompts/{{split}}.parquet",
        gt=tracked(GT),
    output:
        f"{RESULTS}/prompts/{{split}}.pointing.json",
    log:
        f"{RESULTS}/logs/pointing_{{split}}.log",
    conda:
        ENV
    params:
        content=contents(MANIFEST, GT),
    script:
        "../workflow/scripts/pointing.py"
