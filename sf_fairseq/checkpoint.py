"""Safe loading of fairseq / AV-HuBERT checkpoints on torch >= 2.6.

torch now unpickles with ``weights_only=True``: only tensors, containers and an allow-list of
globals may appear in a file, so a malicious pickle cannot run code. fairseq checkpoints also hold
a few harmless objects (fairseq ``Dictionary``, omegaconf containers, ``argparse.Namespace``, the
SentencePiece model of fine-tuned files, numpy scalars). Registering the plugin
(:mod:`sf_fairseq.plugin`: on ``import sf_fairseq`` once fairseq is imported) adds exactly
those classes to torch's allow-list and routes fairseq's own ``load_checkpoint_to_cpu`` through
:func:`load_checkpoint_to_cpu`, so ``fairseq.checkpoint_utils.load_model_ensemble_and_task`` and
``fairseq-hydra-train`` load such files with safety still on.

A file that needs any other global is refused with :class:`UntrustedCheckpointError`, which names
the global. To load a file you trust anyway, pass ``--trust-checkpoint`` to our commands
(``trust_checkpoint=True`` in Python), or list the file in the environment variable
``SF_FAIRSEQ_TRUSTED_CHECKPOINTS`` (paths separated by ``os.pathsep``); only listed files are
unpickled without restrictions.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import pickle
import pickletools
import zipfile
from typing import IO, TYPE_CHECKING, Any, Mapping

import torch

from .data.rates import FPS

if TYPE_CHECKING:
    from .models.av_hubert import AVHubertModel

logger = logging.getLogger(__name__)

TRUST_ENV_VAR = "SF_FAIRSEQ_TRUSTED_CHECKPOINTS"

# Globals real fairseq / AV-HuBERT checkpoints contain (pretrained and fine-tuned files, fairseq's
# meters and configs). Each is a plain data holder whose unpickling runs no user code.
ALLOWED_GLOBAL_NAMES: tuple[str, ...] = (
    "fairseq.data.dictionary.Dictionary",
    "fairseq.data.encoders.sentencepiece_bpe.SentencepieceBPE",
    "sentencepiece.SentencePieceProcessor",
    "argparse.Namespace",
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "omegaconf.nodes.AnyNode",
    "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode",
    "omegaconf.nodes.FloatNode",
    "omegaconf.nodes.BooleanNode",
    "typing.Any",
    "builtins.dict",
    "builtins.list",
    "builtins.int",
    "builtins.float",
    "builtins.str",
    "builtins.bool",
    "collections.defaultdict",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy._core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy.dtypes.Float64DType",
    "numpy.dtypes.Float32DType",
    "numpy.dtypes.Int64DType",
    "numpy.dtypes.Int32DType",
    "numpy.dtypes.BoolDType",
)


class UntrustedCheckpointError(pickle.UnpicklingError):
    """The checkpoint needs a global outside the allow-list."""


def _import_global(dotted: str) -> Any | None:
    module_name, _, attr = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return None  # e.g. numpy.core on NumPy 2 (an alias module that warns) or numpy._core on 1.x


def allowed_globals() -> list[tuple[Any, str]]:
    """(object, dotted name) for every allow-listed global importable here."""
    resolved = []
    for dotted in ALLOWED_GLOBAL_NAMES:
        obj = _import_global(dotted)
        if obj is not None:
            resolved.append((obj, dotted))
    return resolved


def install_allow_list() -> None:
    """Add the allow-list to torch's safe globals (process-wide; safety stays on)."""
    torch.serialization.add_safe_globals(allowed_globals())


def trusted_paths() -> set[str]:
    value = os.environ.get(TRUST_ENV_VAR, "")
    return {os.path.realpath(p) for p in value.split(os.pathsep) if p}


def is_trusted(path: str | os.PathLike, trust_checkpoint: bool = False) -> bool:
    return trust_checkpoint or os.path.realpath(path) in trusted_paths()


# torch's legacy (non-zip) format: magic number, protocol, system info, the object and its storage
# keys, each a pickle, then raw storage bytes. A raw pickle file is a single pickle.
LEGACY_PICKLES = 5


def _pickle_globals(file: IO[bytes], max_pickles: int = LEGACY_PICKLES) -> set[str]:
    """Dotted names of the globals the first ``max_pickles`` pickles of ``file`` load, found by
    reading their opcodes (nothing is unpickled)."""
    found: set[str] = set()
    for _ in range(max_pickles):
        pushed: list[Any] = []  # values pushed so far: the names STACK_GLOBAL takes are strings
        memo: dict[int, Any] = {}
        try:
            for op, arg, _ in pickletools.genops(file):
                if op.name in ("GLOBAL", "INST"):
                    found.add(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(pushed) >= 2:
                    module, name = pushed[-2:]
                    if isinstance(module, str) and isinstance(name, str):
                        found.add(f"{module}.{name}")
                elif op.name == "MEMOIZE":
                    memo[len(memo)] = pushed[-1] if pushed else None
                elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[int(arg)] = pushed[-1] if pushed else None
                elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                    pushed.append(memo.get(int(arg)))
                elif op.stack_after:
                    pushed.append(arg if isinstance(arg, str) else None)
        except ValueError:  # the end of the file, or the raw bytes after the pickles
            break
    return found


def disallowed_globals(path: str | os.PathLike) -> list[str]:
    """Globals the file needs beyond torch's defaults and our allow-list (read without running
    anything), for zip checkpoints, torch's legacy format and raw pickles alike."""
    allowed = set(ALLOWED_GLOBAL_NAMES)
    if zipfile.is_zipfile(path):
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    else:
        # torch's defaults, as get_unsafe_globals_in_checkpoint reads them for zip files.
        from torch import _weights_only_unpickler

        allowed |= set(_weights_only_unpickler._get_allowed_globals())
        with open(path, "rb") as f:
            found = _pickle_globals(f)
    return sorted(g for g in found if g not in allowed)


def _torch_reason(err: BaseException) -> str:
    """The specific part of torch's refusal message (it opens and closes with generic advice)."""
    paragraphs = [p.strip() for p in str(err).split("\n\n") if p.strip()]
    specific = [p for p in paragraphs[1:] if not p.startswith("Check the documentation")]
    return " ".join(specific) or str(err)


def load_state(path: str | os.PathLike, trust_checkpoint: bool = False) -> dict[str, Any]:
    """``torch.load`` a checkpoint to CPU: restricted unpickling unless the file is trusted."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if is_trusted(path, trust_checkpoint):
        logger.warning("loading %s without unpickling restrictions (trusted by the user)", path)
        return torch.load(path, map_location="cpu", weights_only=False)
    install_allow_list()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        try:
            offending = disallowed_globals(path)
        except (OSError, RuntimeError, ValueError):  # e.g. a TorchScript archive
            offending = []
        if offending:
            problem = (f"it needs globals outside the allow-list of fairseq/AV-HuBERT checkpoint "
                       f"classes: {', '.join(offending)}")
        else:  # e.g. a raw pickle whose opcodes the restricted unpickler does not support
            problem = f"the restricted unpickler cannot read it ({_torch_reason(err)})"
        raise UntrustedCheckpointError(
            f"refusing to unpickle {path}: {problem}. Unpickling such a file without restrictions "
            f"can run arbitrary code. If you trust this file, pass --trust-checkpoint "
            f"(trust_checkpoint=True in Python) or add its path to the environment variable "
            f"{TRUST_ENV_VAR}."
        ) from err


# ---- saved configurations -------------------------------------------------------------------

_config_dataclasses: dict[str, dict[str, type]] = {"model": {}, "task": {}, "criterion": {}}


def register_config_upgrade(group: str, name: str, dataclass: type) -> None:
    """Let saved ``cfg.<group>`` sections named ``name`` be upgraded to ``dataclass`` on load."""
    _config_dataclasses[group][name] = dataclass


def _upgrade_section(group: str, section: Mapping[str, Any] | None, where: str) -> Any:
    if not isinstance(section, Mapping):
        return section
    dataclass = _config_dataclasses[group].get(section.get("_name"))
    if dataclass is None:
        return section
    known = {f.name for f in dataclasses.fields(dataclass)} | {"_name"}
    unknown = sorted(set(section) - known)
    if unknown:
        logger.warning(
            "%s: dropping config keys %s unknown to %s (written by another AV-HuBERT version)",
            where,
            unknown,
            dataclass.__name__,
        )
    upgraded = {key: value for key, value in section.items() if key in known}
    nested = upgraded.get("w2v_args")
    if isinstance(nested, Mapping):
        upgraded["w2v_args"] = upgrade_config(dict(nested), f"{where} w2v_args")
    return upgraded


def upgrade_config(cfg: dict[str, Any], where: str = "checkpoint") -> dict[str, Any]:
    """Drop keys the current dataclasses do not declare from the model/task/criterion sections
    this plugin owns; missing keys take their defaults when fairseq merges the dataclass."""
    cfg = dict(cfg)
    for group in _config_dataclasses:
        if group in cfg:
            cfg[group] = _upgrade_section(group, cfg[group], where)
    return cfg


def _as_container(cfg: Any) -> Any:
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg


def load_checkpoint_to_cpu(
    path: str,
    arg_overrides: dict[str, Any] | None = None,
    load_on_all_ranks: bool = False,
    trust_checkpoint: bool = False,
) -> dict[str, Any]:
    """Drop-in replacement for ``fairseq.checkpoint_utils.load_checkpoint_to_cpu``: safe
    unpickling and upgrading of saved configs, then fairseq's own post-processing."""
    from fairseq import checkpoint_utils
    from fairseq.dataclass.utils import overwrite_args_by_name
    from fairseq.file_io import PathManager
    from omegaconf import OmegaConf

    from . import plugin

    plugin.register()  # completes a registration deferred by a half-imported module (see plugin)
    local_path = PathManager.get_local_path(path)
    state = load_state(local_path, trust_checkpoint=trust_checkpoint)
    if state.get("args") is not None and arg_overrides is not None:
        for name, value in arg_overrides.items():
            setattr(state["args"], name, value)
    if state.get("cfg") is not None:
        cfg = upgrade_config(_as_container(state["cfg"]), where=str(path))
        state["cfg"] = OmegaConf.create(cfg, flags={"allow_objects": True})
        if arg_overrides is not None:
            overwrite_args_by_name(state["cfg"], arg_overrides)
    return checkpoint_utils._upgrade_state_dict(state)


def install_fairseq_loader() -> None:
    """Route fairseq's checkpoint loading (trainer, load_model_ensemble_*) through ours: fairseq
    looks the function up on its module at call time."""
    from fairseq import checkpoint_utils

    checkpoint_utils.load_checkpoint_to_cpu = load_checkpoint_to_cpu


# ---- the AV-HuBERT encoder of any checkpoint ------------------------------------------------

FINETUNED_MODEL_NAMES = ("av_hubert_seq2seq", "av_hubert_ctc")
FINETUNED_ENCODER_PREFIX = "encoder.w2v_model."


def load_encoder(
    path: str | os.PathLike, trust_checkpoint: bool = False
) -> tuple["AVHubertModel", dict[str, Any]]:
    """The AV-HuBERT encoder of a pretrained (``av_hubert``) or fine-tuned (``av_hubert_seq2seq``,
    ``av_hubert_ctc``) checkpoint, in eval mode on CPU, built from the file alone: no label,
    tokenizer or pretraining files are read.

    Returns:
        (model, task config of its pretraining as a plain dict: ``image_crop_size``,
        ``image_mean``, ``image_std``, ``stack_order_audio``, ``normalize``, ...).
    """
    from . import plugin
    from .models.av_hubert import AVHubertConfig, AVHubertModel

    plugin.register()  # the config upgrades of every plugin dataclass
    state = load_state(path, trust_checkpoint=trust_checkpoint)
    if state.get("cfg") is None:
        raise ValueError(f"{path}: no 'cfg' in the checkpoint (pre-hydra fairseq files are not supported)")
    cfg = upgrade_config(_as_container(state["cfg"]), where=os.fspath(path))
    model_cfg, task_cfg, prefix = cfg["model"], cfg["task"], ""
    name = model_cfg.get("_name")
    if name in FINETUNED_MODEL_NAMES:
        w2v_args = model_cfg.get("w2v_args")
        if not isinstance(w2v_args, Mapping):
            raise ValueError(f"{path}: fine-tuned checkpoint without w2v_args (the encoder's config)")
        model_cfg, task_cfg, prefix = w2v_args["model"], w2v_args["task"], FINETUNED_ENCODER_PREFIX
    elif name != "av_hubert":
        raise ValueError(f"{path}: model type {name!r} is not an AV-HuBERT model")

    fields = {f.name for f in dataclasses.fields(AVHubertConfig)}
    kwargs = {k: v for k, v in model_cfg.items() if k in fields}
    if "latent_temp" in kwargs:
        kwargs["latent_temp"] = tuple(kwargs["latent_temp"])
    if not isinstance(kwargs.get("label_rate"), (int, float)):
        kwargs["label_rate"] = task_cfg.get("label_rate", task_cfg.get("sample_rate", FPS))
    encoder_cfg = AVHubertConfig(**kwargs)

    weights = {k[len(prefix):]: v for k, v in state["model"].items() if k.startswith(prefix)}
    dictionaries = (state.get("task_state") or {}).get("dictionaries")
    if dictionaries:
        num_classes = [len(d) for d in dictionaries]
    else:
        num_classes = [weights["label_embs_concat"].size(0)]
    model = AVHubertModel(encoder_cfg, num_classes, encoder_cfg.label_rate / task_cfg.get("sample_rate", FPS))
    if "final_proj.weight" not in weights:
        model.remove_pretraining_modules()
    model.load_state_dict(weights, strict=True)
    return model.eval(), dict(task_cfg)
