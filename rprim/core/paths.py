"""Where things are: the one cache folder, this rprim's version, and how to install an extra of it."""

from __future__ import annotations

import os
from pathlib import Path


def package_version() -> str:
    """This rprim's version (``0.0.0+local`` in a source tree that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rprim")
    except PackageNotFoundError:
        return "0.0.0+local"


def cache_dir() -> Path:
    """``$RPRIM_CACHE``, else ``$XDG_CACHE_HOME/rprim``, else ``~/.cache/rprim``."""
    env = os.environ.get("RPRIM_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base).expanduser() / "rprim"


def install_hint(extra: str) -> str:
    """A pip command that installs an extra of rprim as this copy was installed: from the
    checkout when this code runs from one (editable install, or Python started in the
    repository root), else from the wheel file or folder pip recorded (``direct_url.json``).
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
    if _is_checkout(root):  # this code runs from a checkout
        return f"pip install -e '{root}[{extra}]'"
    if where and os.path.exists(where):  # the wheel file or source folder it was installed from
        return f"pip install '{where}[{extra}]'"
    return f"pip install '/path/to/rprim-checkout[{extra}]' (or the rprim wheel you installed)"


def _is_checkout(root: str) -> bool:
    """Whether ``root`` is an rprim source tree (its pyproject names the project rprim)."""
    try:
        with open(os.path.join(root, "pyproject.toml"), encoding="utf-8") as f:
            return 'name = "rprim"' in f.read()
    except OSError:
        return False
