from __future__ import annotations

import pytest
import torch

from weaksam.compute import select_device, use_bf16
from weaksam.config import ComputeConfig


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_cpu_only_machine() -> None:
    assert select_device(ComputeConfig(device="auto")).type == "cpu"
    assert not use_bf16(ComputeConfig(precision="auto"), torch.device("cpu"))
    with pytest.raises(RuntimeError, match="no CUDA device"):
        select_device(ComputeConfig(device="cuda"))
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        use_bf16(ComputeConfig(precision="bf16"), torch.device("cpu"))


def test_bf16_only_on_cuda_with_auto_or_bf16() -> None:
    cuda = torch.device("cuda")
    assert use_bf16(ComputeConfig(precision="auto"), cuda)
    assert use_bf16(ComputeConfig(precision="bf16"), cuda)
    assert not use_bf16(ComputeConfig(precision="fp32"), cuda)
