"""Weakly supervised object detection: WSDDN, OICR and MIST on proposals."""

from weaksam.dependencies import RuleKeys

# read at test time from the config (the detection rules), recorded in model.pt by training
TEST_KEYS = ("test_scales", "test_flip", "test_score_thresh", "test_nms", "max_per_image")

_TRAIN = RuleKeys(
    (
        "wsod.backbone",
        "wsod.output_stride",
        "wsod.roi_channels",
        "wsod.fc_dim",
        "wsod.pool_size",
        "wsod.dropout",
        "wsod.max_proposals",
        "wsod.refinements",
        "wsod.iterations",
        "wsod.batch_size",
        "wsod.lr",
        "wsod.weight_decay",
        "wsod.bias_lr_mult",
        "wsod.backbone_lr_mult",
        "wsod.refine_lr_mult",
        "wsod.refine_ramp_iterations",
        "wsod.exclude_difficult_labels",
        "wsod.warmup_iterations",
        "wsod.warmup_factor",
        "wsod.lr_steps",
        "wsod.gamma",
        "wsod.train_scales",
        "wsod.max_side",
        "wsod.flip",
        "wsod.pca_lighting",
        "wsod.dropblock",
        "proposals.min_side",
        "proposals.max_area_fraction",
        "assets.vgg16",
        "compute.seed",
        "compute.precision",
    ),
    head_keys={"mist": ("wsod.mist",), "oicr": ("wsod.oicr",)},
    # on_bad_image: a policy (an image without proposals stops the job, or is left out and
    # logged); the test keys: recorded in model.pt, the detection rules read the config's
    unhashed=("dataset.on_bad_image", *(f"wsod.{k}" for k in TEST_KEYS)),
)
_DETECT = RuleKeys(
    (
        *(f"wsod.{k}" for k in TEST_KEYS),
        "wsod.max_side",
        "wsod.max_proposals",
        "proposals.min_side",
        "proposals.max_area_fraction",
    )
)
METRICS = RuleKeys(("evaluation.iou", "evaluation.plus_one"))

# The config keys each rule of this stage reads (weaksam.dependencies): its rerun triggers.
CONFIG_KEYS = {
    "wsod_train": _TRAIN,
    "wsod_train_selective_search": _TRAIN,
    "oracle_wsod_train": _TRAIN,
    "wsod_detect": _DETECT,
    "wsod_detect_selective_search": _DETECT,
    "oracle_wsod_detect": _DETECT,
    "wsod_metrics": METRICS,
    "oracle_wsod_metrics": METRICS,
}
