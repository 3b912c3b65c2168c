"""The fairseq plugin seam: where sf_fairseq meets fairseq.

Registering the project in fairseq means importing the modules that carry fairseq's
``@register_task`` / ``@register_model`` / ``@register_criterion`` decorators (they import torch
and fairseq), adding the classes fairseq checkpoints hold to torch's unpickling allow-list, and
routing fairseq's ``load_checkpoint_to_cpu`` through :mod:`sf_fairseq.checkpoint`.

That work happens where fairseq is used, never on ``import sf_fairseq`` alone, so numpy-only
stages (reports, metrics, preprocessing workers) stay free of torch and fairseq. The contract:

* ``import sf_fairseq`` imports neither torch nor fairseq. If fairseq is already imported, the
  project is registered at once; otherwise :func:`register_on_fairseq_import` arranges for it to
  be registered as soon as fairseq is imported. Either way, after ``import sf_fairseq``,
  ``fairseq.checkpoint_utils.load_model_ensemble_and_task`` loads AV-HuBERT checkpoints.
* The user dir (``common.user_dir`` / ``--user-dir``), :func:`sf_fairseq.checkpoint.load_encoder`
  and the checkpoint loader call :func:`register` themselves.
* :func:`register` is idempotent and may be called directly.

When fairseq is first imported by one of this package's own modules (``from
sf_fairseq.models.av_hubert import AVHubertModel`` in a fresh process), that module is still half
executed, so the other plugin modules, some of which import from it, cannot be imported yet:
the allow-list and loader are installed at once and the remaining imports wait for the next
:func:`register` call (the checkpoint loader makes one before every load).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

from ._logging import drop_library_chatter, preserve_root_logging

# The modules whose import registers a fairseq task, model or criterion (in dependency order).
PLUGIN_MODULES: tuple[str, ...] = (
    "sf_fairseq.models.av_hubert",
    "sf_fairseq.models.av_hubert_seq2seq",
    "sf_fairseq.criteria.av_hubert_criterion",
    "sf_fairseq.criteria.av_alignment_criterion",
    "sf_fairseq.tasks.av_hubert_pretraining",
)

_loader_installed = False
_modules_imported = False


def _half_imported_own_module() -> str | None:
    """The name of one of this package's modules that is being executed right now, if any."""
    for name, module in list(sys.modules.items()):
        if name.startswith("sf_fairseq.") and getattr(getattr(module, "__spec__", None), "_initializing", False):
            return name
    return None


def _install_loader() -> None:
    global _loader_installed
    if not _loader_installed:
        from . import checkpoint

        checkpoint.install_allow_list()
        checkpoint.install_fairseq_loader()
        _loader_installed = True


def _import_plugin_modules() -> None:
    global _modules_imported
    if not _modules_imported:
        with preserve_root_logging():  # importing fairseq's models sets the root logger to DEBUG
            for name in PLUGIN_MODULES:
                importlib.import_module(name)
        _modules_imported = True


def register() -> None:
    """Register sf_fairseq's task, models and criteria in fairseq and install the checkpoint
    allow-list and loader (idempotent; imports torch and fairseq)."""
    drop_library_chatter()
    with preserve_root_logging():
        import fairseq  # noqa: F401  (with the hook installed, this registers what it can)
    _install_loader()
    _import_plugin_modules()


def is_registered() -> bool:
    return _loader_installed and _modules_imported


def _register_after_fairseq() -> None:
    _install_loader()
    if _half_imported_own_module() is None:
        _import_plugin_modules()


class _RegisteringLoader(importlib.abc.Loader):
    """fairseq's own loader, followed by the registration."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with preserve_root_logging():
            self._loader.exec_module(module)
        _register_after_fairseq()

    def __getattr__(self, name: str) -> Any:  # resource readers, get_filename, ...
        return getattr(self._loader, name)


class _FairseqImportHook(importlib.abc.MetaPathFinder):
    """Finds ``fairseq`` with the normal finders and wraps its loader once."""

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None):
        if fullname != "fairseq":
            return None
        sys.meta_path.remove(self)  # one-shot; also keeps find_spec below from finding us again
        spec = importlib.util.find_spec("fairseq")
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


def register_on_fairseq_import() -> None:
    """Register now if fairseq is imported, else as soon as it is (see the module docstring)."""
    drop_library_chatter()  # fairseq logs "Please install tensorboardX" while being imported
    if "fairseq" in sys.modules:
        _register_after_fairseq()
    elif not any(isinstance(finder, _FairseqImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _FairseqImportHook())
