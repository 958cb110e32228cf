"""Pseudo ground truth from WSOD detections (METHOD.md section 9)."""

from weaksam.dependencies import RuleKeys

# The config keys each rule of this stage reads (weaksam.dependencies): its rerun triggers.
CONFIG_KEYS = {
    "pgt": RuleKeys(("pgt",)),
    "pgt_quality": RuleKeys(("pgt", "evaluation.iou")),
    "oracle_pgt": RuleKeys(("pgt", "evaluation.iou")),
}
