"""SAM's mask decoder for many point prompts on one image, rearranged to do less arithmetic.

``MaskDecoder.predict_masks`` copies the image embedding for every prompt and runs the two-way
transformer on each copy: per prompt, every attention projects all 4,096 image tokens (about
2.7 of the decoder's 3.6 GFLOP per prompt). Two exact identities remove most of that work.

1. **What every prompt shares.** A point prompt's dense embedding is ``no_mask_embed`` for all
   prompts, so the first layer's image tokens are the same for every prompt: the token-to-image
   keys and values and the image-to-token queries of layer 1 are projected once per image.
2. **Few tokens, many pixels.** A prompt has T tokens (IoU, 4 masks, its points and SAM's pad
   point: 7 for one point) against N = 4,096 image tokens. A projection of all N image tokens
   followed by a product with T tokens is re-associated so that the small side is projected
   instead, per head h (W the projection, X the N x 256 image tokens, q / v the tokens):

   - token-to-image scores: ``q_h (X W_k,h)^T = (q_h W_k,h) X^T`` (+ ``q_h b_k,h``, constant
     over N);
   - token-to-image values: ``A_h (X W_v,h + b_v,h) = (A_h X) W_v,h + b_v,h`` (rows of A sum
     to 1);
   - image-to-token scores: ``(X W_q,h + b_q,h) k_h^T = X (W_q,h k_h^T) + b_q,h k_h^T``;
   - image-to-token output projection: ``sum_h A_h v_h W_o,h = [A_1 .. A_8] [v_h W_o,h]``.

   Each N x 256 by 256 x 128 projection (268 MFLOP) becomes an N x 256 by 256 x 8T product
   (117 MFLOP at T = 7).

For a one-point prompt the transformer's cost falls from about 2.8 to 0.9 GFLOP; the output
upscaling (two transposed convolutions, 0.8 GFLOP) is unchanged: 3.6 -> 1.7 GFLOP per prompt,
plus 0.8 GFLOP once per image (``torch.utils.flop_counter``, ``bench/sam_limit.py``). The saving
shrinks as a prompt has more points (T grows): 3.7 -> 2.0 GFLOP at 3 points, 3.8 -> 3.1 at 12.
The logits equal ``predict_masks``' up to float rounding (``tests/test_sam.py`` compares both,
and the boxes, on real prompts).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock
from torch import nn


def point_embeddings(
    prompt_encoder: PromptEncoder, coords: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """(B, N, 2) points in the 1024 frame, (B, N) labels -> (B, N + 1, 256) sparse embeddings, as
    ``PromptEncoder`` embeds point-only prompts (coordinates + 0.5, one padding point with label
    -1), written with arithmetic masks instead of boolean indexing so that it exports to ONNX."""
    pe = prompt_encoder
    c = torch.cat([coords, torch.zeros_like(coords[:, :1])], dim=1) + 0.5  # (B, N + 1, 2)
    lab = torch.cat([labels, -torch.ones_like(labels[:, :1])], dim=1)[..., None]  # (B, N + 1, 1)
    enc = pe.pe_layer.forward_with_coords(c, pe.input_image_size)  # (B, N + 1, 256)
    pad, neg, pos = (lab == -1).float(), (lab == 0).float(), (lab == 1).float()
    return (
        enc * (1 - pad)
        + pad * pe.not_a_point_embed.weight
        + neg * pe.point_embeddings[0].weight
        + pos * pe.point_embeddings[1].weight
    )


class ImageTensors(NamedTuple):
    """Per image: tokens x and positional encoding p (N, 256); layer 1's token-to-image keys k1
    and values v1 and image-to-token queries q1, (heads, N, 256 / 2 / heads)."""

    x: torch.Tensor
    p: torch.Tensor
    k1: torch.Tensor
    v1: torch.Tensor
    q1: torch.Tensor


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, C) -> (B, heads, T, C / heads)."""
    b, t, c = x.shape
    return x.view(b, t, heads, c // heads).transpose(1, 2)


class FactoredPointDecoder(nn.Module):
    """Point prompts through SAM's prompt encoder and mask decoder, with the per-image work done
    once per image (``image_tensors``) and the per-prompt attention re-associated (module
    docstring). ``forward`` takes the image tensors, (B, N, 2) points in the 1024 frame and (B, N)
    labels, and returns low-res logits (B, 4, 256, 256) and predicted IoU (B, 4); its graph is what
    the ONNX fast path exports. ``decode`` takes the (1, 256, 64, 64) embedding instead and keeps
    the image tensors of the last embedding it saw."""

    def __init__(self, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder) -> None:
        super().__init__()
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        transformer = mask_decoder.transformer
        skips = [layer.skip_first_layer_pe for layer in transformer.layers]
        if not skips or skips[0] is not True or any(skips[1:]):
            raise ValueError(f"expected SAM's two-way transformer, got skip_first_layer_pe {skips}")
        self.heads = transformer.num_heads
        self.embedding_size = tuple(prompt_encoder.image_embedding_size)
        self._embedding: tuple[torch.Tensor, int, str] | None = None  # tensor, version, precision
        self._tensors: ImageTensors | None = None

    @torch.no_grad()
    def image_tensors(self, embedding: torch.Tensor) -> ImageTensors:
        """What every prompt of this image shares: image tokens X (the dense embedding added),
        their positional encoding P, and layer 1's projections of them, split into heads."""
        if embedding.shape[0] != 1:
            raise ValueError(f"expected one image's embedding, got {tuple(embedding.shape)}")
        pe = self.prompt_encoder
        src = embedding + pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        x = src.flatten(2)[0].T.contiguous()  # (N, 256)
        p = pe.get_dense_pe().to(x).flatten(2)[0].T.contiguous()  # (N, 256)
        layer = self.mask_decoder.transformer.layers[0]
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        return ImageTensors(
            x=x,
            p=p,
            k1=_heads(t2i.k_proj(x + p)[None], self.heads)[0].contiguous(),  # (H, N, c)
            v1=_heads(t2i.v_proj(x)[None], self.heads)[0].contiguous(),  # (H, N, c)
            q1=_heads(i2t.q_proj(x + p)[None], self.heads)[0].contiguous(),  # (H, N, c)
        )

    def cached_image_tensors(self, embedding: torch.Tensor) -> ImageTensors:
        """``image_tensors`` of the last embedding seen, computed again for another tensor or
        one changed in place since (its version counter moved), or under another float32
        matmul precision. They are computed in float32 with autocast off, so that one cache
        serves decoding under any autocast (which casts them where it casts)."""
        key = (embedding, embedding._version, torch.get_float32_matmul_precision())
        last = self._embedding
        if last is None or self._tensors is None or last[0] is not embedding or last[1:] != key[1:]:
            with torch.autocast(device_type=embedding.device.type, enabled=False):
                self._tensors = self.image_tensors(embedding.float())
            self._embedding = key
        return self._tensors

    @torch.no_grad()
    def decode(
        self, embedding: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``OnnxPointDecoder`` call in torch: embedding, points, labels -> logits, IoU."""
        low_res, iou = self(*self.cached_image_tensors(embedding), coords, labels)
        return low_res, iou

    def _token_to_image(
        self, attn: Attention, q: torch.Tensor, keys: torch.Tensor, p: torch.Tensor
    ) -> torch.Tensor:
        """``attn(q, keys + p, keys)`` for (B, T, 256) tokens q and (B, N, 256) image tokens,
        without projecting the image tokens."""
        b, t, _ = q.shape
        h = self.heads
        qh = _heads(attn.q_proj(q), h)  # (B, H, T, c)
        c = qh.shape[-1]
        wk = attn.k_proj.weight.view(h, c, -1)  # (H, c, 256)
        qk = qh @ wk  # (B, H, T, 256)
        bias = qh @ attn.k_proj.bias.view(h, c, 1)  # (B, H, T, 1)
        scores = (qk.flatten(1, 2) @ (keys + p).transpose(1, 2)).view(b, h, t, -1) + bias
        a = torch.softmax(scores / math.sqrt(c), dim=-1)  # (B, H, T, N)
        ak = (a.flatten(1, 2) @ keys).view(b, h, t, -1)  # (B, H, T, 256)
        wv = attn.v_proj.weight.view(h, c, -1)  # (H, c, 256)
        out = ak @ wv.transpose(1, 2) + attn.v_proj.bias.view(h, 1, c)  # (B, H, T, c)
        return attn.out_proj(out.transpose(1, 2).reshape(b, t, h * c))

    def _image_update(
        self, attn: Attention, scores: torch.Tensor, queries: torch.Tensor
    ) -> torch.Tensor:
        """The image-to-token attention's output (B, N, 256) from its (B, N, H, T) scores:
        softmax over the tokens, then the values and the output projection re-associated."""
        h = scores.shape[2]
        a = torch.softmax(scores / math.sqrt(attn.internal_dim // h), dim=-1)
        vh = _heads(attn.v_proj(queries), h)  # (B, H, T, c)
        c = vh.shape[-1]
        wo = attn.out_proj.weight.view(-1, h, c).permute(1, 2, 0)  # (H, c, 256)
        vw = (vh @ wo).flatten(1, 2)  # (B, H * T, 256)
        out: torch.Tensor = a.flatten(2) @ vw + attn.out_proj.bias
        return out

    def _first_layer(
        self, layer: TwoWayAttentionBlock, tokens: torch.Tensor, shared: ImageTensors
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _ = tokens.shape
        h = self.heads
        queries = layer.norm1(layer.self_attn(q=tokens, k=tokens, v=tokens))
        # tokens to image: keys and values of the shared image tokens
        t2i = layer.cross_attn_token_to_image
        qh = _heads(t2i.q_proj(queries + tokens), h)  # (B, H, T, c)
        c = qh.shape[-1]
        a = torch.softmax(qh @ shared.k1.transpose(1, 2) / math.sqrt(c), dim=-1)
        out = (a @ shared.v1).transpose(1, 2).reshape(b, t, h * c)
        queries = layer.norm2(queries + t2i.out_proj(out))
        queries = layer.norm3(queries + layer.mlp(queries))
        # image to tokens: queries of the shared image tokens
        i2t = layer.cross_attn_image_to_token
        kh = _heads(i2t.k_proj(queries + tokens), h)  # (B, H, T, c)
        scores = (shared.q1[None] @ kh.transpose(2, 3)).permute(0, 2, 1, 3)  # (B, N, H, T)
        keys = layer.norm4(shared.x + self._image_update(i2t, scores, queries))
        return queries, keys

    def _later_layer(
        self,
        layer: TwoWayAttentionBlock,
        queries: torch.Tensor,
        keys: torch.Tensor,
        tokens: torch.Tensor,
        p: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _ = tokens.shape
        h = self.heads
        q = queries + tokens
        queries = layer.norm1(queries + layer.self_attn(q=q, k=q, v=queries))
        out = self._token_to_image(layer.cross_attn_token_to_image, queries + tokens, keys, p)
        queries = layer.norm2(queries + out)
        queries = layer.norm3(queries + layer.mlp(queries))
        i2t = layer.cross_attn_image_to_token
        kh = _heads(i2t.k_proj(queries + tokens), h)  # (B, H, T, c)
        c = kh.shape[-1]
        wq = i2t.q_proj.weight.view(h, c, -1)  # (H, c, 256)
        m = (wq.transpose(1, 2) @ kh.transpose(2, 3)).permute(0, 2, 1, 3)  # (B, 256, H, T)
        bias = (i2t.q_proj.bias.view(h, 1, c) @ kh.transpose(2, 3)).view(b, 1, h * t)
        scores = ((keys + p) @ m.flatten(2) + bias).view(b, -1, h, t)  # (B, N, H, T)
        keys = layer.norm4(keys + self._image_update(i2t, scores, queries))
        return queries, keys

    def forward(
        self,
        x: torch.Tensor,
        p: torch.Tensor,
        k1: torch.Tensor,
        v1: torch.Tensor,
        q1: torch.Tensor,
        coords: torch.Tensor,
        labels: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        md = self.mask_decoder
        shared = ImageTensors(x, p, k1, v1, q1)
        sparse = point_embeddings(self.prompt_encoder, coords, labels)
        b = sparse.shape[0]
        out_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens[None].expand(b, -1, -1), sparse], dim=1)  # (B, T, 256)
        transformer = md.transformer
        queries, keys = self._first_layer(transformer.layers[0], tokens, shared)
        for layer in transformer.layers[1:]:
            queries, keys = self._later_layer(layer, queries, keys, tokens, p[None])
        final = transformer.final_attn_token_to_image
        out = self._token_to_image(final, queries + tokens, keys, p[None])
        queries = transformer.norm_final_attn(queries + out)
        # As predict_masks from here: one hypernetwork per mask token, the upscaled image tokens
        mask_tokens = queries[:, 1 : 1 + md.num_mask_tokens]
        hyper = torch.stack(
            [mlp(mask_tokens[:, i]) for i, mlp in enumerate(md.output_hypernetworks_mlps)], dim=1
        )  # (B, 4, 32)
        iou = md.iou_prediction_head(queries[:, 0])
        return self._masks(keys, hyper), iou

    def _masks(self, keys: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        """(B, N, 256) image tokens, (B, 4, 32) hypernetwork outputs -> (B, 4, 4h, 4w) logits:
        ``output_upscaling`` of the image tokens, then each mask's product with them."""
        b = keys.shape[0]
        h, w = self.embedding_size
        src = keys.transpose(1, 2).reshape(b, -1, h, w)
        up = self.mask_decoder.output_upscaling(src)  # (B, 32, 4h, 4w)
        return (hyper @ up.flatten(2)).view(b, -1, *up.shape[-2:])


def compiled_point_decoder(
    factored: FactoredPointDecoder,
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``factored.decode`` with the decoder's per-prompt graph under ``torch.compile`` (dynamic
    shapes: batch and point count are symbolic, except that a size of 1 gets its own graph, so
    a job compiles a few times: one-point prompts, multi-point class prompts, a batch of one).
    On an H200 it decodes the paper's 1,044 prompts per image in 0.088 s against 0.155 s eager,
    the same boxes (``bench/sam_gpu_profile.py --stage``); the first call compiles (22-38 s
    there)."""
    module = torch.compile(factored, dynamic=True)

    @torch.no_grad()
    def decode(
        embedding: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        low_res, iou = module(*factored.cached_image_tensors(embedding), coords, labels)
        return low_res, iou

    return decode
