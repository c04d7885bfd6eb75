"""Finding and loading a model: config and tokenizer first (cheap), weights last (expensive).

``inspect_model`` resolves what ``--model`` names (a folder, a ``.gguf`` file, a reference
name, a hub id) and reads only its config and tokenizer, so every check that needs no weights
(not a causal LM, no tokenizer, prompts longer than the context, a bad device) fails in a
second. ``load_weights`` then loads the model. Every failure a user can fix is one
:class:`RprimError` line:

* a ``config.json`` that is not JSON says so (it used to read "hub unreachable");
* a truncated or corrupt ``*.safetensors`` file is found from its header before loading, and
  any other failure while loading weights is reported with the file's name;
* a hub id that is neither cached nor reachable fails at once, without the hub client's
  retries (a dozen lines over half a minute): ``HF_HUB_OFFLINE=1`` is honoured, otherwise one
  TCP connection to the endpoint is tried with a short timeout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import struct
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rprim.core import RprimError
from rprim.core.torch_util import resolve_device, torch_dtype

from .spec import ModelSpec

HUB_TIMEOUT_S = 3.0
_TRUE = ("1", "true", "yes", "on")


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _looks_local(spec: str) -> bool:
    return (spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or spec.count("/") > 1
            or os.sep != "/" and os.sep in spec)


def check_causal(config: Any, where: str) -> None:
    """RprimError unless ``config`` describes a decoder-only causal LM."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    kind = getattr(config, "model_type", "?")
    archs = getattr(config, "architectures", None) or []
    causal_arch = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    if (kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or getattr(config, "is_encoder_decoder", False)
            or (archs and not causal_arch)):
        what = archs[0] if archs else kind
        raise RprimError(f"{where} is a {what} model, not a causal language model; rprim scores "
                         "decoder-only causal LMs (Llama, GPT-2, Qwen, ...)")


def check_config_json(folder: Path) -> None:
    """A config.json that is not a JSON object is named as such, not as a hub problem."""
    path = folder / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise RprimError(f"{path} is not valid JSON (not UTF-8 text); re-save the model with "
                         "save_pretrained") from None
    except json.JSONDecodeError as e:
        raise RprimError(f"{path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
                         "fix it or re-save the model with save_pretrained") from None
    except OSError as e:
        raise RprimError(f"cannot read {path} ({e.strerror or e})") from None
    if not isinstance(data, dict):
        raise RprimError(f"{path} is not a JSON object; re-save the model with save_pretrained")


def _local(spec: str, path: Path, kwargs: dict[str, Any]) -> tuple[str, str]:
    """(source, where) of an existing file or folder; checks the file kinds."""
    if path.is_file():
        if path.suffix != ".gguf":
            raise RprimError(f"--model {spec} is a file but not a .gguf; pass a Hugging Face "
                             "model folder (with config.json) or a .gguf file")
        missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
        if missing:
            raise RprimError(f"loading a .gguf needs {' and '.join(missing)}: "
                             f"pip install {' '.join(missing)}")
        kwargs["gguf_file"] = path.name
        return str(path.parent), str(path)
    if not (path / "config.json").is_file():
        raise RprimError(f"{spec} has no config.json; point --model at a Hugging Face model "
                         "folder (save_pretrained output) or a .gguf file")
    check_config_json(path)
    return str(path), str(path)


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _TRUE
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub(spec: str, kwargs: dict[str, Any]) -> None:
    """Fail fast for a hub id that can be neither read from the cache nor fetched."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(spec, "config.json"), str)
    except Exception:  # noqa: BLE001 - an id the hub client rejects: let from_pretrained say why
        cached = False
    if cached:
        kwargs["local_files_only"] = True  # scoring reads what is cached; no network round trips
        return
    if _offline():
        raise RprimError(f"cannot load {spec}: it is not a local path, not in the Hugging Face cache, "
                         "and HF_HUB_OFFLINE is set; pass a local model folder")
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=HUB_TIMEOUT_S).close()
    except OSError as e:
        raise RprimError(f"cannot load {spec}: it is not a local path, not in the Hugging Face cache, "
                         f"and {host} cannot be reached ({e.strerror or e}); pass a local model "
                         "folder") from None


def inspect_model(spec: str, trust_remote_code: bool = False, add_bos: bool | None = None,
                  tokenizer: Any = None) -> ModelSpec:
    """The :class:`ModelSpec` of ``spec`` from its config and tokenizer (no weights): every
    no-weights check fails here. ``tokenizer``: use this one instead of the model's own."""
    from transformers import AutoConfig, AutoTokenizer

    from .reference import is_reference, reference_path

    if is_reference(spec):
        spec = str(reference_path(spec))
    path = Path(spec).expanduser()
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if path.exists():
        source, where = _local(spec, path, kwargs)
    elif _looks_local(spec):
        raise RprimError(f"no such file or folder: {spec}; check the --model path")
    else:
        _hub(spec, kwargs)
        source = where = spec
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise RprimError(f"{where} needs custom code; pass --trust-remote-code if you "
                             "trust it") from None
        raise RprimError(f"cannot read the model config of {where}: {first_line(e)}") from None
    except OSError as e:
        if path.exists():
            raise RprimError(f"cannot read the model config of {where}: {first_line(e)}") from None
        raise RprimError(f"cannot load {where}: the hub has no such model or refused it "
                         f"({first_line(e)}); pass a local folder") from None
    check_causal(config, where)
    if tokenizer is not None:
        return ModelSpec.of(where, config, tokenizer, add_bos, source, kwargs)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds here
        raise RprimError(f"no usable tokenizer in {where} ({first_line(e)}); save one there with "
                         "tokenizer.save_pretrained or pass tokenizer= in Python") from None
    if tokenizer is None or not callable(tokenizer) or isinstance(tokenizer, bool):
        raise RprimError(f"no tokenizer in {where}; save one there with tokenizer.save_pretrained")
    return ModelSpec.of(where, config, tokenizer, add_bos, source, kwargs)


def _safetensors_problem(f: Path) -> str | None:
    """Why ``f`` is not a whole safetensors file, or None when its header and length agree."""
    size = f.stat().st_size
    with open(f, "rb") as fh:
        raw = fh.read(8)
        n = struct.unpack("<Q", raw)[0] if len(raw) == 8 else 0
        if n <= 0 or 8 + n > size:
            return f"its header is cut off ({size:,} bytes)"
        try:
            header = json.loads(fh.read(n))
            ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return "its header is not valid"
    need = 8 + n + max(ends, default=0)
    return f"it holds {size:,} bytes, its header needs {need:,}" if need > size else None


def check_safetensors(folder: Path) -> None:
    """RprimError naming a ``*.safetensors`` file whose header or length is wrong.

    The header (8-byte length, then JSON with each tensor's byte range) says how long the file
    must be, so a truncated download is caught without reading the weights.
    """
    for f in sorted(folder.glob("*.safetensors")):
        try:
            why = _safetensors_problem(f)
        except OSError as e:
            raise RprimError(f"cannot read {f} ({e.strerror or e})") from None
        if why:
            raise RprimError(f"the weights file {f} is truncated or corrupt ({why}); re-save or "
                             "re-download the model")


def load_weights(src: ModelSpec, dtype: str = "auto", device: str = "auto") -> Any:
    """The model of ``src`` on ``device`` in ``dtype``, in eval mode."""
    from transformers import AutoModelForCausalLM

    dev = resolve_device(device)
    dt = torch_dtype(dtype, dev)
    folder = Path(src.source)
    if folder.is_dir() and "gguf_file" not in src.kwargs:
        check_safetensors(folder)
    try:
        model = AutoModelForCausalLM.from_pretrained(src.source, config=src.config, dtype=dt,
                                                     **src.kwargs)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - SafetensorError, OSError, RuntimeError, ...
        raise RprimError(f"cannot load the weights of {src.where} ({type(e).__name__}: "
                         f"{first_line(e)}); the files may be truncated or corrupt: re-save or "
                         "re-download the model") from None
    model.to(dev).eval()
    return model


def load_hf(spec: str, trust_remote_code: bool = False, dtype: str = "auto",
            device: str = "auto") -> tuple[Any, Any, str]:
    """(model, tokenizer, resolved path) for a folder, a .gguf file, a reference or hub name."""
    resolve_device(device)  # a missing GPU fails before anything is read
    src = inspect_model(spec, trust_remote_code=trust_remote_code)
    return load_weights(src, dtype, device), src.tokenizer, src.where
