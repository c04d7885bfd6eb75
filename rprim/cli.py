"""The ``rprim`` command line: the group, and the one place errors become exit statuses.

Commands live beside this module, one module per area: ``cli_data`` (generate, tasks, suite,
export), ``cli_eval`` (eval), ``cli_finetune`` (finetune), ``cli_zoo`` (train, plan). Only these
modules know click. Every user error (bad task, bad knob, unwritable output, ...) ends as one
line on stderr, ``rprim: error: <what and how to fix it>``, with exit status 2 and no
traceback; SIGTERM unwinds like Ctrl-C, so temp files are removed and finished work is kept.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys

import click

import rprim
from rprim.core import RprimError, install_hint, sigterm_as_interrupt


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(rprim.__version__, prog_name="rprim")
def cli() -> None:
    """Reasoning primitives: generate task data, evaluate models, train stacked models."""


def _register() -> None:
    from rprim import cli_data, cli_eval, cli_finetune, cli_study, cli_zoo  # light: click only

    for module in (cli_data, cli_eval, cli_finetune, cli_zoo, cli_study):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()

# Optional dependencies and the extra that installs each.
EXTRA_FOR = {"torch": "torch", "transformers": "torch", "tokenizers": "torch", "safetensors": "torch",
             "tqdm": "torch", "pandas": "parquet", "pyarrow": "parquet", "gguf": "gguf",
             "accelerate": "gguf", "vllm": "vllm", "lm_eval": "lm-eval", "matplotlib": "report"}


def _fail(message: str) -> None:
    """Print ``rprim: error: <message>`` as exactly one line and exit with status 2."""
    click.echo("rprim: error: " + " ".join(str(message).splitlines()), err=True)
    sys.exit(2)


# OS errors that are the machine's state, said in one line (anything else is a bug: traceback)
ENVIRONMENT = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
               errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.ENAMETOOLONG, errno.ELOOP, errno.EMFILE,
               errno.ENFILE, errno.EIO, errno.EFBIG}


def _free_space(path: str | None) -> str:
    """Free bytes on the file system holding ``path`` (its nearest existing parent), as text."""
    probe = os.path.abspath(path or ".")
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe) if os.path.dirname(probe) != probe else ""
    try:
        free = shutil.disk_usage(probe or ".").free
    except OSError:
        return ""
    return f" ({free / 2**20:,.1f} MiB free there)"


def environment_error(e: OSError) -> str | None:
    """One line for an OS error caused by the machine's state, else None."""
    if e.errno not in ENVIRONMENT:
        return None
    where = e.filename or "the output"
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return (f"cannot write {where}: {e.strerror or 'no space left on device'}{_free_space(e.filename)}; "
                "nothing was half written (finished work is kept): free some space, or pass an output "
                "folder (and --cache-dir / RPRIM_CACHE) on a disk with room")
    return (f"cannot use {where}: {e.strerror or e}; check that the path exists and is writable "
            "(also --cache-dir / RPRIM_CACHE), or choose another folder")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and exit status 2."""
    sigterm_as_interrupt()
    try:
        cli.main(args=argv, prog_name="rprim", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("rprim: interrupted; finished work is kept, nothing half written", err=True)
        sys.exit(130)
    except click.ClickException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `rprim` or `rprim export` alone: help
            click.echo(e.format_message())
            sys.exit(0)
        _fail(e.format_message())
    except RprimError as e:
        _fail(str(e))
    except ModuleNotFoundError as e:  # an optional dependency of this command is missing
        top = (e.name or "").split(".")[0]
        if top not in EXTRA_FOR:
            raise
        _fail(f"this command needs the {top} package, which is not installed; "
              f"{install_hint(EXTRA_FOR[top])}")
    except BrokenPipeError:  # `rprim generate ... | head`
        sys.stderr.close()
        sys.exit(0)
    except OSError as e:  # the machine, not rprim: a full disk, a read-only or missing folder
        message = environment_error(e)
        if message is None:
            raise
        _fail(message)
    except RuntimeError as e:  # torch.save reports a failed write as a RuntimeError
        if "file write failed" not in str(e) and "No space left" not in str(e):
            raise
        _fail(environment_error(OSError(errno.ENOSPC, "No space left on device")) or str(e))
