"""rprim's core: the pieces every package shares, written once.

- ``errors``   :class:`RprimError`, the one exception a user sees (one line, exit status 2)
- ``files``    atomic files and folders, output checks, folder locks, SIGTERM as Ctrl-C
- ``paths``    the cache folder, install hints that work from a checkout or a wheel
- ``options``  parsing of command-line values typed by a dataclass's fields (``-p``, ``--set``),
               dtype / device / batch-size / thread-count spellings
- ``torch_util`` what needs torch (imported lazily): dtypes, devices, the optimizer factory
- ``progress`` the time left of long work: seconds per unit measured per kind of work

This layer imports nothing else of rprim and no heavy library at import time, so
``rprim.primitives`` (data only, no torch) can build on it.
"""

from .errors import RprimError
from .files import (atomic_file, atomic_folder, check_free_space, check_output_file, check_output_folder,
                    folder_lock, publish_folder, sigterm_as_interrupt, write_json, write_text)
from .options import (parse_batch_size, parse_device, parse_dtype, parse_pairs, parse_threads,
                      default_threads, typed_value, typed_values)
from .paths import cache_dir, install_hint

__all__ = [
    "check_free_space",
    "RprimError", "atomic_file", "atomic_folder", "cache_dir", "check_output_file",
    "check_output_folder", "default_threads", "install_hint", "folder_lock", "parse_batch_size", "parse_device",
    "parse_dtype", "parse_pairs", "parse_threads", "publish_folder", "sigterm_as_interrupt",
    "typed_value", "typed_values", "write_json", "write_text",
]
