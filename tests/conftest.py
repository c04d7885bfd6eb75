import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/solvers.py and other helpers

# Tests not marked ``cuda`` assert CPU facts (bit-exact resume, one process == two gloo ranks,
# fp32 equality with plain generate), so on a GPU machine ``--device auto`` means the CPU for
# them, in this process and in every subprocess they start; ``cuda`` tests get the GPU back.
os.environ.setdefault("RPRIM_DEVICE", "cpu")


@pytest.fixture(autouse=True)
def _gpu_for_cuda_tests(request, monkeypatch):
    if request.node.get_closest_marker("cuda") is not None:
        monkeypatch.delenv("RPRIM_DEVICE", raising=False)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` run only where a CUDA GPU is visible."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
