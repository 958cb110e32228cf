"""Stage A and B: class activation maps from a multi-label classifier, and their peak points."""

from weaksam.dependencies import RuleKeys

# The ``kind`` of a CAM store (weaksam.h5store). It lives here, not in the torch-importing
# extract module, so that readers of CAM stores (prompts, figures, report) stay light.
CAM_STORE_KIND = "cam"

# what builds the classifier network (training, and the CAM jobs that rebuild it)
_NETWORK = (
    "cam.backbone",
    "cam.output_stride",
    "cam.freeze_bn",
    "cam.backbone_lr_mult",
    "cam.dropout",
    "cam.neck_channels",
    "assets.vgg16",
    "assets.resnet50",
)

# The config keys each rule of this stage reads (weaksam.dependencies): its rerun triggers.
CONFIG_KEYS = {
    "train_classifier": RuleKeys(
        (
            *_NETWORK,
            "cam.train_size",
            "cam.batch_size",
            "cam.iterations",
            "cam.lr",
            "cam.weight_decay",
            "cam.warmup_iterations",
            "cam.scale_jitter",
            "cam.max_rotation",
            "compute.seed",
            "compute.precision",
        )
    ),
    # the training split's CAMs take their classes from the image labels, the test split's from
    # the classifier's scores above the threshold
    "cam_shard": RuleKeys(
        (
            *_NETWORK,
            "cam.scales",
            "cam.flip",
            "cam.max_side",
            "cam.border_pad",
            "cam.cell_alignment",
        ),
        test_split_keys=("cam.test_class_threshold",),
    ),
    "cam_merge": RuleKeys(()),
    "cam_figure": RuleKeys(()),
    "prompts": RuleKeys(("prompts",)),
    "pointing": RuleKeys(()),
}
