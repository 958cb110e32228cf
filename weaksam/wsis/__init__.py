"""Weakly supervised instance segmentation: SAM masks from pseudo boxes (METHOD.md 11)."""

from weaksam.dependencies import RuleKeys
from weaksam.proposals import SAM_MODEL
from weaksam.retrain import CONFIG_KEYS as _RETRAIN
from weaksam.retrain import MASK_DETECT, MASK_TRAIN

_MASKS = RuleKeys((*SAM_MODEL, "wsis.largest_component", "wsis.clip_to_box"))

# The config keys each rule of this stage reads (weaksam.dependencies): its rerun triggers.
CONFIG_KEYS = {
    "wsis_masks_shard": _MASKS,
    "wsis_masks_merge": RuleKeys(()),
    "wsis_quality": RuleKeys(()),
    "sam_box_check": _MASKS,
    "maskrcnn_train": MASK_TRAIN,
    "oracle_maskrcnn_train": MASK_TRAIN,
    "maskrcnn_detect": MASK_DETECT,
    "maskrcnn_metrics": _RETRAIN["retrain_metrics"],
}
