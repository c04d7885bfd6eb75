"""``rprim eval``: score a model on the primitives and print a table.

Kept light to import: torch and transformers load inside the command, after the arguments
and the output folder have been checked (so bad input fails in a second, not after loading).
"""

from __future__ import annotations

import os

import click

from rprim.core import RprimError, parse_batch_size, parse_device, parse_dtype


def _quiet_transformers() -> None:
    """No library progress bars or advice on stderr: only ours."""
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


@click.command("eval")
@click.option("--model", "model", required=True,
              help="HF model folder, .gguf file, hub id, or a reference name (smollm2-135m).")
@click.option("--tasks", default="suite", show_default=True,
              help="'suite' (the 14 canonical tasks) or comma-separated task names.")
@click.option("--shots", default=5, show_default=True, type=int, help="Few-shot exemplars.")
@click.option("--n", "n", default=None, type=int,
              help="Examples per task (the first n of the frozen suite; default all 1000).")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Data and exemplar seed (0 = the frozen suite).")
@click.option("--backend", default="auto", show_default=True,
              type=click.Choice(["auto", "hf", "vllm"]))
@click.option("--batch-size", "batch_size", default="auto", show_default=True,
              help="'auto' (largest that fits) or a number.")
@click.option("--out", "out", default=None, type=click.Path(),
              help="Write results.json and samples/<task>.jsonl into this folder.")
@click.option("--trust-remote-code", is_flag=True, help="Allow custom model code from the folder.")
@click.option("--dtype", default="auto", show_default=True,
              help="auto (fp32 on CPU, bf16 on GPU), fp32, bf16 or fp16 (float32, bfloat16, float16).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--max-new-tokens", default=None, type=int,
              help="Decoding budget (default: longest answer + 8 tokens).")
@click.option("--tensor-parallel-size", default=1, show_default=True, type=int,
              help="vLLM: GPUs to shard the model over.")
@click.option("--max-model-len", default=None, type=int,
              help="vLLM: context length to reserve (default: the model's, at most 8192).")
@click.option("--threads", default=None, type=int,
              help="CPU threads for torch (default: torch's choice; 1 can be faster on a busy machine).")
def eval_command(model: str, tasks: str, shots: int, n: int | None, seed: int, backend: str,
                 batch_size: str, out: str | None, trust_remote_code: bool, dtype: str,
                 device: str, max_new_tokens: int | None, tensor_parallel_size: int,
                 max_model_len: int | None, threads: int | None) -> None:
    """Score a causal LM on the reasoning primitives (greedy exact match)."""
    from rprim.evaluators.evaluate import task_names
    from rprim.evaluators.results import check_results_folder

    bs = parse_batch_size(batch_size)
    dtype = parse_dtype(dtype)
    device = parse_device(device)
    names = task_names(tasks)
    if n is not None and n < 1:
        raise RprimError(f"--n must be a positive number of examples (got {n})")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise RprimError(f"--max-new-tokens must be positive (got {max_new_tokens})")
    if out is not None:
        check_results_folder(out)
    if backend == "vllm":
        from rprim.evaluators.vllm import require

        require()
    if tensor_parallel_size < 1:
        raise RprimError(f"--tensor-parallel-size must be positive (got {tensor_parallel_size})")
    if threads is not None and threads < 1:
        raise RprimError(f"--threads must be positive (got {threads})")
    _quiet_transformers()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from rprim.evaluators import evaluate

    res = evaluate(model, tasks=names, shots=shots, n=n, seed=seed, batch_size=bs,
                   backend=backend, max_new_tokens=max_new_tokens,
                   trust_remote_code=trust_remote_code, dtype=dtype, device=device,
                   progress=True, vllm_options={"tensor_parallel_size": tensor_parallel_size,
                                                "max_model_len": max_model_len})
    click.echo(res.table())
    click.echo(f"{res.meta['examples']} examples in {res.meta['wall_time_s']:.1f} s "
               f"({res.meta['examples_per_s']:.1f}/s), {res.meta['model']}", err=True)
    if out is not None:
        path = res.save(out)
        click.echo(f"results: {path / 'results.json'}", err=True)


COMMANDS = [eval_command]
