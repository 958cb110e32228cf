"""A CPU fast path for point prompts: the torch prompt encoder + mask decoder exported once to
ONNX with a dynamic batch and all 4 outputs, run by onnxruntime.

Two graphs can be exported: SAM's decoder as it is (``PointPromptDecoder``), or the factored
decoder of ``weaksam.sam.factored`` (the per-image part computed once per image in torch and fed
to the graph; 2.1x fewer FLOPs per one-point prompt). On one CPU thread, with the boxes taken by
``PromptableSegmenter.mask_boxes``, they run at 2.38x and 3.93x the per-prompt torch loop
(``bench/bench_sam.py``).
Both embed points as ``PromptEncoder`` does for point-only prompts (``point_embeddings``). Box
prompts keep using the torch path.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder
from torch import nn

from weaksam.sam.encoders import cpu_session
from weaksam.sam.factored import FactoredPointDecoder, ImageTensors, point_embeddings

logger = logging.getLogger(__name__)


class PointPromptDecoder(nn.Module):
    """(1, 256, 64, 64) embedding, (B, N, 2) points in the 1024 frame, (B, N) labels ->
    low-res logits (B, 4, 256, 256) and predicted IoU (B, 4)."""

    def __init__(self, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder) -> None:
        super().__init__()
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder

    def forward(
        self, embedding: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pe = self.prompt_encoder
        sparse = point_embeddings(pe, coords, labels)
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
            coords.shape[0], -1, *pe.image_embedding_size
        )
        low_res, iou = self.mask_decoder.predict_masks(embedding, pe.get_dense_pe(), sparse, dense)
        return low_res, iou


def export_point_decoder(
    module: nn.Module, example: tuple[torch.Tensor, ...], names: list[str], path: Path
) -> None:
    """Export a point decoder (the image inputs, then (B, N, 2) coords and (B, N) labels) to
    ONNX at ``path``, with a dynamic batch and point count."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=names,
            output_names=["low_res", "iou"],
            dynamic_axes={
                "coords": {0: "B", 1: "N"},
                "labels": {0: "B", 1: "N"},
                "low_res": {0: "B"},
                "iou": {0: "B"},
            },
            opset_version=17,
            dynamo=False,
        )


class OnnxPointDecoder:
    """Runs a point-prompt decoder exported to ONNX in onnxruntime (CPU): the factored decoder
    (``factored=True``) or SAM's as it is."""

    def __init__(
        self,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        *,
        threads: int = 0,
        factored: bool = True,
    ) -> None:
        self.factored: FactoredPointDecoder | None = None
        points = (torch.zeros(2, 1, 2), torch.ones(2, 1))
        module: nn.Module
        if factored:
            module = self.factored = FactoredPointDecoder(prompt_encoder, mask_decoder).eval().cpu()
            image = tuple(module.image_tensors(torch.zeros(1, 256, *module.embedding_size)))
            names = [*ImageTensors._fields, "coords", "labels"]
        else:
            module = PointPromptDecoder(prompt_encoder, mask_decoder).eval().cpu()
            image = (torch.zeros(1, 256, *prompt_encoder.image_embedding_size),)
            names = ["embedding", "coords", "labels"]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "point_decoder.onnx"
            export_point_decoder(module, (*image, *points), names, path)
            self.session = cpu_session(path, threads)
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != names:  # a traced-away input would leave its feed unread
            raise RuntimeError(f"the exported decoder takes {inputs}, expected {names}")
        logger.info(
            "point-prompt decoder%s exported to ONNX for the CPU fast path",
            " (factored)" if factored else "",
        )

    def __call__(
        self, embedding: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        feeds = {
            "coords": coords.cpu().float().numpy(),
            "labels": labels.cpu().float().numpy(),
        }
        if self.factored is not None:
            image = self.factored.cached_image_tensors(embedding.cpu())
            feeds.update((k, v.numpy()) for k, v in zip(ImageTensors._fields, image, strict=True))
        else:
            feeds["embedding"] = embedding.cpu().numpy()
        low_res, iou = self.session.run(None, feeds)
        return torch.from_numpy(low_res), torch.from_numpy(iou)
