"""Checkpoints and model bundles: the one place where vqnat reads and writes model weights.

Three formats:

- **fairseq checkpoints** (``*.pt``) are pickles: loading one can run arbitrary code. torch >= 2.6 refuses them
  unless ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` is set; vqnat sets it only after :func:`check_trusted` has passed.
  A checkpoint is trusted when it lies in a save folder that ``vqnat train`` made on this machine (it writes
  :data:`RUN_MARKER` naming the folder's own path), or when the caller says so (``--trust-checkpoint``).
- **model bundles** are folders that need no pickle (:func:`export_bundle`, :func:`read_bundle`)::

      model.safetensors   weights (fp16 by default; tied weights stored once, see config.json "tied")
      config.json         kind (nat | teacher), the fairseq model and task config, vqnat version, provenance
      dict.<src>.txt      fairseq dictionaries
      dict.<tgt>.txt
      spm.model           the joint sentencepiece model (when the data had one)
      README.md           a short model card

  An ``inference_only`` bundle leaves out what only training uses (the target autoencoder, the compressor and the
  codebook's EMA statistics): it translates exactly as the full model, and ``config.json`` says it cannot resume
  training.
- **checkpoint chunks** (``PREFIX.part0``, ``PREFIX.part1``, ...): a fairseq checkpoint in fp16, split for carrying
  between machines; read here (:func:`read_checkpoint_chunks`), written and turned back into a checkpoint by
  :mod:`vqnat.checkpoint_tools`, the part of this module that transforms checkpoints (pack/unpack, warm start).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Literal

TRUSTED_LOAD_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
RUN_MARKER = ".vqnat-run.json"  # written by `vqnat train` into its save folder

BUNDLE_FORMAT = "vqnat-model-bundle"
BUNDLE_FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
SPM_FILE = "spm.model"
CODEBOOK_PREFIX = "bottleneck.codebook."  # the latent transformer's codebook buffers (vqnat.quantization.codebook)
# What the latent transformer uses only in training: translation never runs them.
TRAINING_ONLY_PREFIXES = ("autoencoder.", "compress.", CODEBOOK_PREFIX + "ema_sum", CODEBOOK_PREFIX + "ema_count")
# Top-level key of a fairseq checkpoint whose training-only weights were left out (and came back as zeros): it
# translates as the full model did but cannot resume training (see vqnat.checkpoint_tools).
INFERENCE_ONLY_KEY = "vqnat_inference_only"
CHUNK_NAME = re.compile(r"\.part(\d+)")  # PREFIX.part<i>: the i-th chunk of a packed checkpoint
DTYPES = ("float32", "float16", "bfloat16")

ModelRole = Literal["nat", "teacher"]
DEFAULT_MODEL_NAMES: dict[str, str] = {"nat": "bible-en-de-nat", "teacher": "bible-en-de-teacher"}
MODELS_ENV = "VQNAT_MODELS"  # a folder that holds the default bundles instead of the repository's models/


class UntrustedCheckpointError(ValueError):
    """A pickled checkpoint from outside vqnat's own save folders, loaded without ``trust``."""


# ------------------------------------------------------------------------------------------------------------------
# trust
# ------------------------------------------------------------------------------------------------------------------

def allow_trusted_checkpoint_loading() -> None:
    """Let fairseq's ``torch.load`` unpickle checkpoints in this process (call :func:`check_trusted` first).

    torch then warns, on every load, that the variable is set: vqnat set it on purpose, so that warning is muted.
    """
    os.environ.update(TRUSTED_LOAD_ENV)
    warnings.filterwarnings("ignore", message="Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected",
                            category=UserWarning)


def trusted_checkpoint_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a fairseq subprocess (generate, resume) that loads trusted checkpoints."""
    env = dict(os.environ if base is None else base)
    env.update(TRUSTED_LOAD_ENV)
    return env


def mark_own_save_dir(save_dir: str | Path) -> None:
    """Record that ``save_dir`` is a vqnat training folder of this machine: its checkpoints load without
    ``--trust-checkpoint``. The marker names the folder's absolute path, so a copy of the folder elsewhere (say, a
    downloaded run) is not trusted by it."""
    folder = Path(save_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RUN_MARKER).write_text(json.dumps({"save_dir": str(folder)}) + "\n", encoding="utf-8")


def is_own_checkpoint(path: str | Path) -> bool:
    """True when ``path`` lies directly in a folder marked by :func:`mark_own_save_dir` at that very path."""
    folder = Path(path).resolve().parent
    try:
        marker = json.loads((folder / RUN_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("save_dir") == str(folder)


def check_trusted(path: str | Path, trust: bool) -> None:
    """Raise :class:`UntrustedCheckpointError` (one line, with the fix) unless the pickle at ``path`` may load."""
    if trust or is_own_checkpoint(path):
        return
    raise UntrustedCheckpointError(
        f"{path} is a pickled checkpoint from outside a vqnat training folder, and loading a pickle can run code: "
        f"convert it once with `vqnat export {path} --out DIR --trust-checkpoint` (then use DIR), or pass "
        "--trust-checkpoint if you trust its source")


def read_checkpoint(path: str | Path, trust: bool = False) -> dict[str, Any]:
    """The fairseq checkpoint at ``path`` as fairseq loads it (config upgraded, ``cfg`` an OmegaConf config).

    Refuses an untrusted pickle before reading a byte of it; a file that is not a checkpoint is a ``ValueError``.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder without {CONFIG_FILE}: not a model bundle (give a bundle folder or a "
                         ".pt checkpoint)")
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    check_trusted(path, trust)
    from fairseq import checkpoint_utils

    import vqnat  # noqa: F401  (registers the plugin: fairseq cannot upgrade a plugin config without it)

    allow_trusted_checkpoint_loading()
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(str(path))
    except Exception as err:  # a truncated file, or not a fairseq checkpoint at all
        raise ValueError(f"{path} is not a readable fairseq checkpoint: {type(err).__name__}: "
                         f"{str(err).strip().splitlines()[-1] if str(err).strip() else ''}") from err
    if state.get("cfg") is None or state["cfg"].get("task") is None:
        raise ValueError(f"{path} has no fairseq config: not a checkpoint written by fairseq-train / vqnat")
    return state


def read_checkpoint_as_saved(path: str | Path, trust: bool = False) -> dict[str, Any]:
    """The pickled state at ``path`` exactly as it was saved (no fairseq config upgrade): for tools that rewrite a
    checkpoint and save it again (averaging, warm starts), so what they write keeps its original layout.

    The same trust rule as :func:`read_checkpoint`; a file that is not a fairseq checkpoint is a ``ValueError``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    check_trusted(path, trust)
    return _unpickle_state(path, str(path))


def chunk_paths(prefix: str | Path) -> list[Path]:
    """The chunks ``PREFIX.part0, PREFIX.part1, ...`` of a packed checkpoint, in order (empty when there are none)."""
    prefix = Path(prefix)
    found = {int(m.group(1)): p for p in prefix.parent.glob(f"{prefix.name}.part*")
             if p.name.startswith(prefix.name) and (m := CHUNK_NAME.fullmatch(p.name[len(prefix.name):]))}
    return [found[i] for i in sorted(found)]


def read_checkpoint_chunks(prefix: str | Path, trust: bool = False) -> dict[str, Any]:
    """The state that :func:`vqnat.checkpoint_tools.pack_checkpoint` split into ``PREFIX.part*``, as it was saved.

    The trust rule of :func:`read_checkpoint`: the chunks must lie in a vqnat training folder, or ``trust``.
    """
    parts = chunk_paths(prefix)
    if not parts:
        raise ValueError(f"no {prefix}.part* files: give the prefix that the packing wrote (PREFIX for PREFIX.part0)")
    if not (trust or is_own_checkpoint(parts[0])):
        raise UntrustedCheckpointError(
            f"{prefix}.part* are pickled checkpoint chunks from outside a vqnat training folder, and loading a pickle "
            "can run code: pass --trust-checkpoint (trust=True) if you trust their source")
    return _unpickle_state(io.BytesIO(b"".join(p.read_bytes() for p in parts)), f"{prefix}.part*")


def _unpickle_state(source: Path | IO[bytes], name: str) -> dict[str, Any]:
    """``torch.load`` of a checkpoint whose trust was checked; one-line ``ValueError`` for what is no checkpoint."""
    import torch

    allow_trusted_checkpoint_loading()
    try:
        state = torch.load(source, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated file, or not a torch file at all
        raise ValueError(f"{name} is not a readable fairseq checkpoint: {type(err).__name__}: "
                         f"{str(err).strip().splitlines()[-1] if str(err).strip() else ''}") from err
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ValueError(f"{name} holds no model weights: not a checkpoint written by fairseq-train")
    return state


def drop_training_state(state: dict[str, Any], progress: bool = False) -> dict[str, Any]:
    """Drop, in place, what only resuming a fairseq run reads from its checkpoint ``state``; returns ``state``.

    Always the optimizer's state (``last_optimizer_state``: Adam's two moments, twice the model's size).
    ``progress``: also the run's progress (``extra_state``: the data loader's position ``train_iterator``, the
    meters, the best score, and ``previous_training_time``, which fairseq's ``cumulative_training_time()`` adds to
    its clock, so that ``--stop-time-hours`` of a run started from these weights would count the old run's hours);
    fairseq gives a checkpoint without it a fresh ``train_iterator`` when it loads one. ``optimizer_history`` stays
    (small; the update count is read from it).
    """
    state["last_optimizer_state"] = None
    if progress:
        state["extra_state"] = {}
    return state


# ------------------------------------------------------------------------------------------------------------------
# bundles
# ------------------------------------------------------------------------------------------------------------------

def is_bundle(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def default_models_dir() -> Path:
    """Where the default bundles live: ``$VQNAT_MODELS``, else the repository's ``models/`` folder."""
    if os.environ.get(MODELS_ENV):
        return Path(os.environ[MODELS_ENV])
    return Path(__file__).resolve().parent.parent / "models"


def default_model(role: ModelRole) -> Path:
    """The bundle that commands use when no model is named (``role``: "nat" or "teacher")."""
    if role not in DEFAULT_MODEL_NAMES:
        raise ValueError(f"no default model for {role!r}: choose one of {', '.join(DEFAULT_MODEL_NAMES)}")
    path = default_models_dir() / DEFAULT_MODEL_NAMES[role]
    if not is_bundle(path):
        raise ValueError(f"no default {role} model at {path} (a source checkout has it under models/): name a model "
                         "bundle or checkpoint explicitly")
    return path


def read_bundle_config(bundle: str | Path) -> dict[str, Any]:
    bundle = Path(bundle)
    if not is_bundle(bundle):
        raise ValueError(f"{bundle} is not a model bundle (no {CONFIG_FILE})")
    try:
        config = json.loads((bundle / CONFIG_FILE).read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"{bundle / CONFIG_FILE} is not valid JSON: {err}") from err
    if config.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{bundle / CONFIG_FILE} is not a vqnat model bundle config (format {config.get('format')!r})")
    if config.get("format_version", 0) > BUNDLE_FORMAT_VERSION:
        raise ValueError(f"{bundle} uses bundle format {config['format_version']}; this vqnat reads up to "
                         f"{BUNDLE_FORMAT_VERSION}: upgrade vqnat")
    return config


def read_bundle(bundle: str | Path, dtype: str = "float32") -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config, weights)`` of a bundle: the weights as ``dtype`` tensors, tied names restored (sharing one
    tensor), without the training-only tensors an ``inference_only`` bundle leaves out. Never unpickles."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = read_bundle_config(bundle)
    try:
        stored = load_file(str(Path(bundle) / WEIGHTS_FILE))
    except (OSError, SafetensorError) as err:
        raise ValueError(f"{Path(bundle) / WEIGHTS_FILE} is not readable safetensors: {err}") from err
    target = getattr(torch, dtype)
    weights = {k: v.to(target) if v.is_floating_point() else v for k, v in stored.items()}
    for alias, name in config.get("tied", {}).items():
        weights[alias] = weights[name]
    return config, weights


def cast_weights(weights: Mapping[str, Any], dtype: Any) -> dict[str, Any]:
    """``weights`` with floating tensors cast to the torch ``dtype``, each tied weight cast once: the names of one
    stored tensor (see :func:`_tie_once`) share the one cast tensor, so ``torch.save`` stores it once."""
    unique, tied = _tie_once(weights)
    cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in unique.items()}
    return {k: cast[tied.get(k, k)] for k in weights}


def _tie_once(weights: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Split ``weights`` into unique tensors and ``{alias: stored name}`` for tensors that share storage (tied
    embeddings) or are equal copies of one (a GPU-saved checkpoint holds a copy of each tied weight)."""
    import torch

    unique: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    by_storage: dict[tuple[int, tuple[int, ...]], str] = {}
    for key, value in weights.items():
        tag = (value.data_ptr(), tuple(value.shape))
        name = by_storage.get(tag)
        if name is None and value.is_floating_point() and value.dim() > 1:
            name = next((k for k, v in unique.items() if v.shape == value.shape and v.dtype == value.dtype
                         and torch.equal(v, value)), None)
        if name is None:
            by_storage[tag] = key
            unique[key] = value
        else:
            aliases[key] = name
    return unique, aliases


def _plain(cfg: Any) -> dict[str, Any]:
    """A fairseq model/task config (OmegaConf, argparse Namespace or dict) as plain JSON-ready values."""
    from argparse import Namespace

    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    if isinstance(cfg, Namespace):
        return dict(vars(cfg))
    return dict(cfg)


def export_bundle(checkpoint: str | Path, out: str | Path, *, data_dir: str | Path | None = None,
                  dtype: str = "float16", inference_only: bool = False, trust: bool = False,
                  provenance: Mapping[str, Any] | None = None) -> Path:
    """Write the model bundle of a fairseq checkpoint (teacher or NAT) to the folder ``out``.

    ``data_dir``: the prepared or data-bin folder with the dictionaries (default: the one recorded in the
    checkpoint). ``dtype``: how floating weights are stored. ``inference_only``: leave out
    :data:`TRAINING_ONLY_PREFIXES` (NAT only). ``provenance``: extra facts for ``config.json`` (scores, data).
    """
    from argparse import Namespace

    import torch
    from safetensors.torch import save_file

    import vqnat
    from vqnat.inference import build_task_and_model, dictionary_folder, find_tokenizer_model

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder: choose a new --out")
    state = read_checkpoint(checkpoint, trust=trust)
    cfg = state["cfg"]
    data = dictionary_folder(Path(data_dir)) if data_dir is not None else Path(str(cfg.task.data).split(":")[0])
    task, model = build_task_and_model(cfg.task, cfg.model, data, state["model"], source=str(checkpoint))
    from vqnat.models.latent_transformer import LatentTransformerModel

    kind: ModelRole = "nat" if isinstance(model, LatentTransformerModel) else "teacher"
    if inference_only and kind != "nat":
        raise ValueError("--inference-only applies to the latent transformer (a teacher needs all its weights)")
    weights = model.state_dict()
    dropped = sorted(k for k in weights if inference_only and k.startswith(TRAINING_ONLY_PREFIXES))
    weights = {k: v for k, v in weights.items() if k not in set(dropped)}
    unique, tied = _tie_once(weights)
    target = getattr(torch, dtype)
    stored = {k: (v.to(target) if v.is_floating_point() else v).contiguous() for k, v in unique.items()}
    src, tgt = task.cfg.source_lang, task.cfg.target_lang
    history = state.get("optimizer_history") or [{}]
    task_cfg = _plain(cfg.task)
    task_cfg.update(data=".", source_lang=src, target_lang=tgt)
    config = {
        "format": BUNDLE_FORMAT, "format_version": BUNDLE_FORMAT_VERSION, "kind": kind,
        "architecture": type(model).__name__, "vqnat_version": vqnat.__version__, "dtype": dtype,
        "inference_only": inference_only, "parameters": sum(v.numel() for v in unique.values()),
        "model_config_type": "namespace" if isinstance(cfg.model, Namespace) else "dataclass",
        "model": _plain(cfg.model), "task": task_cfg, "tied": tied, "left_out": dropped,
        "provenance": {"checkpoint": Path(checkpoint).name, "updates": history[-1].get("num_updates"),
                       "trained_on": str(cfg.task.data).split(":")[0], **(dict(provenance) if provenance else {})},
    }
    out.mkdir(parents=True, exist_ok=True)
    save_file(stored, str(out / WEIGHTS_FILE), metadata={"format": "pt", "vqnat_bundle": BUNDLE_FORMAT})
    for lang in (src, tgt):
        shutil.copyfile(data / f"dict.{lang}.txt", out / f"dict.{lang}.txt")
    spm = find_tokenizer_model(data)
    if spm is not None:
        shutil.copyfile(spm, out / SPM_FILE)
    write_bundle_config(out, config)
    return out


def write_bundle_config(bundle: str | Path, config: Mapping[str, Any]) -> None:
    """(Re)write ``config.json`` and the model card made from it."""
    bundle = Path(bundle)
    (bundle / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (bundle / CARD_FILE).write_text(model_card(config), encoding="utf-8")


def model_card(config: Mapping[str, Any]) -> str:
    """A short model card: what the model is, how to use it, where it came from and how it scored."""
    kind = config["kind"]
    model, task, prov = config["model"], config["task"], config.get("provenance", {})
    arch = model.get("_name") or model.get("arch")
    what = ("Latent Transformer (non-autoregressive, vector-quantized latents, "
            f"{model.get('bottleneck', '?')} EM bottleneck)" if kind == "nat" else "autoregressive Transformer")
    lines = [f"# vqnat model bundle: {kind} ({task['source_lang']} -> {task['target_lang']})", "",
             f"- model: {what}, fairseq architecture `{arch}`, {config['parameters']:,} stored parameters",
             f"- weights: `{WEIGHTS_FILE}` in {config['dtype']}"
             + (" (inference only: cannot resume training)" if config.get("inference_only") else ""),
             f"- made by vqnat {config['vqnat_version']} from `{prov.get('checkpoint')}` after "
             f"{prov.get('updates')} updates"]
    if prov.get("data"):
        lines.append(f"- trained on: {prov['data']}")
    if prov.get("notes"):
        lines.append(f"- notes: {prov['notes']}")
    if prov.get("scored_on"):
        lines.append(f"- scored on: {prov['scored_on']}")
    scores = prov.get("scores") or {}
    if scores:
        lines += ["", "| split | decoding | BLEU | chrF |", "|---|---|---|---|"]
        for row in scores:
            lines.append(f"| {row['split']} ({row['sentences']} sentences) | {row['decoding']} | {row['bleu']:.2f} | "
                         f"{row['chrf']:.2f} |")
        lines += ["", f"sacreBLEU signature: `{scores[0]['bleu_signature']}`"]
    lines += ["", "Use it:", "", "```bash",
              f'echo "In the beginning was the Word." | vqnat translate --model {"path/to/this/folder"}',
              "```", "", "```python", "from vqnat.inference import Translator",
              'print(Translator.load("path/to/this/folder").translate(["In the beginning was the Word."]))',
              "```", ""]
    return "\n".join(lines)


def bundle_to_checkpoint(bundle: str | Path, out: str | Path) -> Path:
    """A fairseq checkpoint (for ``--finetune-from-model``) holding a trainable bundle's weights in fp32.

    The checkpoint is vqnat's own output, written with ``torch.save`` from tensors and plain config values.
    """
    import torch
    from omegaconf import OmegaConf

    config, weights = read_bundle(bundle)
    if config.get("inference_only"):
        raise ValueError(f"{bundle} is an inference-only bundle: it lacks the autoencoder that training needs "
                         "(export the checkpoint without --inference-only)")
    model_cfg: Any = OmegaConf.create(config["model"])
    if config.get("model_config_type") == "namespace":
        from argparse import Namespace

        model_cfg = Namespace(**config["model"])
    task_cfg = dict(config["task"], data=str(Path(bundle).resolve()))
    state = {"cfg": {"model": model_cfg, "task": OmegaConf.create(task_cfg), "common": {}, "checkpoint": {}},
             "model": dict(weights), "optimizer_history": [
                 {"criterion_name": "", "optimizer_name": "", "lr_scheduler_state": {},
                  "num_updates": config["provenance"].get("updates") or 0}],
             "extra_state": {}, "last_optimizer_state": None}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return out


def training_init(init: str | Path, save_dir: str | Path, trust: bool = False) -> Path:
    """The checkpoint that ``--finetune-from-model`` should start a run in ``save_dir`` from: a trainable bundle's
    weights written as ``save_dir/init-from-bundle.pt``, or a checkpoint that may be loaded (see :func:`check_trusted`).
    """
    init = Path(init)
    if is_bundle(init):
        return bundle_to_checkpoint(init, Path(save_dir) / "init-from-bundle.pt")
    if not init.is_file():
        raise ValueError(f"--init: no bundle or checkpoint at {init}")
    check_trusted(init, trust)
    return init
