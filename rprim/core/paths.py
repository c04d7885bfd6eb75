"""Where things are: the one cache folder, and how to install an extra of this copy of rprim."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$RPRIM_CACHE``, else ``$XDG_CACHE_HOME/rprim``, else ``~/.cache/rprim``."""
    env = os.environ.get("RPRIM_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base).expanduser() / "rprim"


def install_hint(extra: str) -> str:
    """A pip command that installs an extra of rprim as this copy was installed: from the
    checkout (editable, or running from the source tree) or from the wheel file it came from.
    rprim is not on the package index, so ``pip install 'rprim[x]'`` would fail."""
    import json
    from importlib.metadata import PackageNotFoundError, distribution
    from urllib.parse import unquote, urlparse

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        direct = json.loads(distribution("rprim").read_text("direct_url.json") or "{}")
    except (PackageNotFoundError, ValueError):
        direct = {}
    url = direct.get("url", "")
    where = unquote(urlparse(url).path) if url.startswith("file:") else ""
    if where and not direct.get("dir_info", {}).get("editable") and where.endswith(".whl"):
        return f"pip install '{where}[{extra}]'"
    if os.path.isfile(os.path.join(root, "pyproject.toml")):
        return f"pip install -e '{root}[{extra}]'"
    if where:
        return f"pip install '{where}[{extra}]'"
    return f"pip install '/path/to/rprim-checkout[{extra}]'"
