"""``rprim eval``: score a model on the primitives and print a table.

Kept light to import: torch and transformers load inside the command, after the arguments
and the output folder have been checked. Then the device, the data, the model's config and
tokenizer are checked (prompt lengths against its context), and only then are weights loaded,
so bad input fails in a second, not after loading.
"""

from __future__ import annotations

import os

import click

from rprim.core import RprimError, default_threads, parse_batch_size, parse_device, parse_dtype
from rprim.core.options import parse_int


def _quiet_transformers(backend: str = "hf") -> None:
    """No library progress bars or advice on stderr: only ours."""
    import warnings

    warnings.filterwarnings("ignore")
    if backend == "vllm":  # vLLM forks workers: tokenizer threads must not be running then
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def _count(value: str | None, flag: str) -> int | None:
    if value is None:
        return None
    try:
        n = parse_int(value)
    except ValueError:
        raise RprimError(f"{flag} takes a positive integer (got {value!r})") from None
    if n < 1:
        raise RprimError(f"{flag} must be a positive number of examples (got {value})")
    return n


@click.command("eval")
@click.option("--model", "model", required=True,
              help="HF model folder, .gguf file, hub id, or a reference name (smollm2-135m).")
@click.option("--tasks", default=None,
              help="'suite' (the 14 canonical tasks, the default) or comma-separated task names.")
@click.option("--data", "data", default=None, type=click.Path(dir_okay=False),
              help="Score your own records instead: a .jsonl file as `rprim generate` writes it "
                   "(prompt, target; grouped by their task field).")
@click.option("--shots", default=None, type=int, help="Few-shot exemplars (default 5; not with --data).")
@click.option("--n", "n", default=None,
              help="Examples per task: the first n (default: all 1000 of the frozen suite).")
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
              help="Decoding budget (default: the task's longest answer + 8 tokens).")
@click.option("--add-bos/--no-add-bos", "add_bos", default=None,
              help="Start prompts with the BOS token, or not (default: per model, as "
                   "lm-evaluation-harness decides; recorded in results.json).")
@click.option("--tensor-parallel-size", default=1, show_default=True, type=int,
              help="vLLM: GPUs to shard the model over.")
@click.option("--max-model-len", default=None, type=int,
              help="vLLM: context length to reserve (default: the model's, at most 8192).")
@click.option("--threads", default=None, type=int,
              help="CPU threads for torch (default: the cores free right now; on a busy machine "
                   "fewer threads are faster).")
def eval_command(model: str, tasks: str | None, data: str | None, shots: int | None,
                 n: str | None, seed: int, backend: str, batch_size: str, out: str | None,
                 trust_remote_code: bool, dtype: str, device: str, max_new_tokens: int | None,
                 add_bos: bool | None, tensor_parallel_size: int, max_model_len: int | None,
                 threads: int | None) -> None:
    """Score a causal LM on the reasoning primitives (greedy exact match)."""
    from rprim.evaluators.data import check_n, read_records, task_names, user_task_data
    from rprim.evaluators.results import check_results_folder

    bs = parse_batch_size(batch_size)
    dtype = parse_dtype(dtype)
    device = parse_device(device)
    count = _count(n, "--n")
    check_n(count)
    if data is not None and tasks is not None:
        raise RprimError("--tasks and --data exclude each other: --data scores the tasks in the file")
    if data is not None and shots is not None:
        raise RprimError("--shots does not apply to --data: its prompts already hold their exemplars "
                         "(make them with `rprim generate --shots K`)")
    if shots is not None and shots < 0:
        raise RprimError(f"--shots must be >= 0 (got {shots})")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise RprimError(f"--max-new-tokens must be positive (got {max_new_tokens})")
    if tensor_parallel_size < 1:
        raise RprimError(f"--tensor-parallel-size must be positive (got {tensor_parallel_size})")
    if threads is not None and threads < 1:
        raise RprimError(f"--threads must be positive (got {threads})")
    chosen = read_records(data) if data is not None else task_names(tasks or "suite")
    if data is not None:
        for name, records in chosen.items():  # checked now, before torch loads
            user_task_data(name, records, count, where=f"--data {data}")
    if out is not None:
        check_results_folder(out)
    if backend == "vllm":
        from rprim.evaluators.engine.vllm import require

        require()
    _quiet_transformers(backend)
    import torch

    from rprim.core.torch_util import resolve_device

    resolve_device(device)  # a missing GPU is a one-line error before any loading
    torch.set_num_threads(threads or default_threads())
    from rprim.evaluators import evaluate

    res = evaluate(model, tasks=chosen, shots=5 if shots is None else shots, n=count, seed=seed,
                   batch_size=bs, backend=backend, max_new_tokens=max_new_tokens,
                   trust_remote_code=trust_remote_code, dtype=dtype, device=device,
                   progress=True, add_bos=add_bos,
                   vllm_options={"tensor_parallel_size": tensor_parallel_size,
                                 "max_model_len": max_model_len})
    click.echo(res.table())
    click.echo(f"{res.meta['examples']} examples in {res.meta['wall_time_s']:.1f} s "
               f"({res.meta['examples_per_s']:.1f}/s), {res.meta['model']}", err=True)
    if out is not None:
        path = res.save(out)
        click.echo(f"results: {path / 'results.json'}", err=True)


COMMANDS = [eval_command]
