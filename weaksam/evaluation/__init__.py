"""Evaluation: VOC AP (11-point and area), CorLoc, COCO AP via pycocotools, proposal recall."""

from weaksam.evaluation.boxes import box_iou
from weaksam.evaluation.corloc import corloc
from weaksam.evaluation.recall import proposal_recall
from weaksam.evaluation.voc_ap import voc_ap_from_pr, voc_detection_ap

__all__ = ["box_iou", "corloc", "proposal_recall", "voc_ap_from_pr", "voc_detection_ap"]

from weaksam.dependencies import RuleKeys

# The config keys each rule of this stage reads (weaksam.dependencies): its rerun triggers.
CONFIG_KEYS = {"report_figures": RuleKeys(())}
