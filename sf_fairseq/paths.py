"""Where the installed package keeps what ``fairseq-hydra-train`` needs: the user dir and the
YAML config dirs. Works the same from a checkout (editable install) and from a wheel.

    fairseq-hydra-train --config-dir "$(sf-paths --config-dir pretrain)" --config-name tiny_cpu \\
        common.user_dir="$(sf-paths --user-dir)" ...

The locations are found from the package's files (``importlib.util.find_spec``), never from a
checkout's layout, so a non-editable ``pip install .`` gives the same answers. The ``sf-paths``
command that prints them is :mod:`sf_fairseq.paths_cli`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

CONFIG_KINDS = ("pretrain", "finetune")


def package_dir() -> Path:
    """The ``sf_fairseq`` package folder (found without importing it)."""
    spec = importlib.util.find_spec("sf_fairseq")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("sf_fairseq is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def user_dir() -> Path:
    """The folder to pass as ``--user-dir`` / ``common.user_dir=``: installed inside the package
    as ``sf_fairseq/user_dir`` (the repository's ``user_dir/``)."""
    installed = package_dir() / "user_dir"
    if (installed / "__init__.py").is_file():
        return installed
    # Editable install: setuptools maps sf_fairseq.user_dir to the repository's user_dir/.
    checkout = package_dir().parent / "user_dir"
    if (checkout / "__init__.py").is_file():
        return checkout
    raise FileNotFoundError(f"no user dir found beside {package_dir()}")


def config_dir(kind: str) -> Path:
    """The folder of the shipped ``fairseq-hydra-train`` configs of one kind (``pretrain`` or
    ``finetune``)."""
    if kind not in CONFIG_KINDS:
        raise ValueError(f"config kind must be one of {CONFIG_KINDS}, not {kind!r}")
    folder = package_dir() / "config" / kind
    if not folder.is_dir():
        raise FileNotFoundError(f"config folder missing from the installed package: {folder}")
    return folder
