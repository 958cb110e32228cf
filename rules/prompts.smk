# Stage B: peak points of the CAMs and the spatial grid, and how well the peaks point.


rule prompts:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        cams=f"{RESULTS}/cam/{{split}}.h5",
    output:
        f"{RESULTS}/prompts/{{split}}.parquet",
    log:
        f"{RESULTS}/logs/prompts_{{split}}.log",
    priority: training_split_first
    conda:
        ENV
    params:
        digest=CAM_DIGEST,
        prompts=section_digest(CFG.prompts),
    script:
        "../workflow/scripts/build_prompts.py"


rule pointing:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        prompts=f"{RESULTS}/prompts/{{split}}.parquet",
        gt=f"{RESULTS}/gt/{{split}}.json",
    output:
        f"{RESULTS}/prompts/{{split}}.pointing.json",
    log:
        f"{RESULTS}/logs/pointing_{{split}}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/pointing.py"
