# Config loading, wildcard constraints and tiny input helpers. No logic beyond that.
import sys

sys.path.insert(0, workflow.basedir)  # the Snakefile reads weaksam from this checkout

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
