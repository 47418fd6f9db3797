"""Rollout rounds on disk: one Arrow dataset folder per round, read back for replay.

A round (``list[BehaviourSample]``) is saved with the ``datasets`` library as ``directory/round_{i:06d}``:
one column per field of :class:`~maro_lightning.credit.BehaviourSample` (derived from the dataclass, so a new
field is stored without touching this module), tensors as lists (None stays None), and a ``maro_round.json``
beside the Arrow files holding ``{"version": 1, "round": i, "rows": n, "tokenizer": fingerprint}`` (the
fingerprint of the tokenizer whose ids the round holds, :func:`tokenizer_fingerprint`; None when not given).

    save_round(samples, "runs/exp1/rounds", 3)          # -> runs/exp1/rounds/round_000003
    for index, samples in load_rounds("runs/exp1/rounds"):
        ...                                             # rounds in index order, one in memory at a time

A round is written into a hidden temporary sibling folder and renamed into place once complete, so a crash
never leaves a half-written round where replay would read it. ``datasets`` is imported only when a round is
saved or loaded: importing this module works without it. :class:`DirectoryLock` keeps two runs from writing
into one folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import fields
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any
from typing import get_args
from typing import get_type_hints

import torch
from torch import Tensor

from maro_lightning.credit import BehaviourSample

FORMAT_VERSION = 1
META_FILE = "maro_round.json"
_ROUND_NAME = re.compile(r"round_(\d{6}|[1-9]\d{6,})")  # exactly what f"round_{i:06d}" writes
_SCALARS = {str: "string", int: "int64", float: "float64", bool: "bool"}  # Python type -> Arrow value type


def save_round(
    samples: Sequence[BehaviourSample],
    directory: str | Path,
    round_index: int,
    overwrite: bool = False,
    tokenizer: str | None = None,
) -> Path:
    """Write a round as the Arrow dataset folder ``directory/round_{round_index:06d}`` and return its path.

    Tensors are stored as lists in their field's dtype (``*_ids`` int64, other tensors float32). The folder
    appears only once fully written (temporary sibling, then rename). ``directory`` is created if needed.
    ``overwrite`` replaces a saved round of that index (a resumed run replaying the rounds after its checkpoint).
    ``tokenizer`` is the fingerprint of the tokenizer that wrote the ids (:func:`tokenizer_fingerprint`).

    Raises:
        ValueError: a negative ``round_index``, or a tensor that is not 1-D or of the wrong kind (float ids).
        FileExistsError: the round is already saved and ``overwrite`` is False.
    """
    if round_index < 0:
        raise ValueError(f"round_index must be >= 0, got {round_index}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"round_{round_index:06d}"
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final}: round {round_index} is already saved")
    columns = _columns(samples)  # fails on a bad tensor before anything touches the disk
    temporary = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=directory))
    try:
        _write(columns, len(samples), temporary, round_index, tokenizer)
        if final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    _fsync(directory)  # the rename itself
    return final


def load_round(path: str | Path) -> list[BehaviourSample]:
    """Read a round saved by :func:`save_round`: tensors come back as int64 ids and float32 log-probs, None
    where they were None.

    Raises:
        FileNotFoundError: ``path`` is not a folder.
        ValueError: the folder is not a round of this format: no ``maro_round.json``, another format version,
            a missing or unknown column, or a row count that disagrees with the version file.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a round folder (no such directory)")
    meta = _read_meta(path)
    datasets = _datasets()
    try:
        with _quiet(datasets):
            dataset = datasets.Dataset.load_from_disk(str(path))
        _check_columns(path, dataset.column_names)
        if len(dataset) != meta.get("rows"):
            raise ValueError(f"{path}: {len(dataset)} rows, but {META_FILE} says {meta.get('rows')!r}")
        columns = dataset.to_dict()  # name -> [N] Python values
        return [_sample(columns, row) for row in range(len(dataset))]
    except ValueError as err:
        if str(err).startswith(str(path)):
            raise
        raise _unreadable(path, err) from err
    except Exception as err:  # noqa: BLE001 - pyarrow and datasets report a damaged file in many ways
        raise _unreadable(path, err) from err


def _unreadable(path: Path, err: BaseException) -> ValueError:
    files = ", ".join(sorted(f.name for f in path.glob("*.arrow"))) or "no .arrow file"
    detail = " ".join(str(err).split())[:160]
    return ValueError(f"{path} ({files}): unreadable Arrow data, truncated or corrupt ({type(err).__name__}: {detail})")


def round_tokenizer(path: str | Path) -> str | None:
    """The tokenizer fingerprint a round was saved with (None if it was saved without one)."""
    return _read_meta(Path(path)).get("tokenizer")


def check_rounds(directory: str | Path) -> dict[Path, str | None]:
    """Read every round of ``directory`` in full, one at a time; returns each round's tokenizer fingerprint.

    Raises:
        FileNotFoundError: the directory is missing or holds no rounds.
        ValueError: a round is unreadable (the message names its folder and Arrow file).
    """
    fingerprints = {}
    for path in round_paths(directory):
        load_round(path)
        fingerprints[path] = round_tokenizer(path)
    return fingerprints


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """16 hex digits identifying a tokenizer's vocabulary (token -> id) and its special ids: rounds saved under
    one fingerprint hold ids that mean the same words only under a tokenizer with the same fingerprint."""
    vocab = sorted(tokenizer.get_vocab().items())
    specials = [tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id]
    digest = hashlib.sha256(json.dumps([vocab, specials], ensure_ascii=False).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]


class DirectoryLock:
    """An exclusive claim on a folder: the file ``.maro.lock`` holding the owner's host and pid.

    A second :meth:`acquire` while the owner lives raises; a lock left by a process of this host that no longer
    exists (a crash, kill -9) is taken over with a warning. A lock from another host cannot be checked, so it is
    honoured: remove the file by hand once that run is over.
    """

    NAME = ".maro.lock"

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / self.NAME
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}
        self.held = False

    def acquire(self) -> None:
        """Take the lock (creating the folder).

        Raises:
            RuntimeError: another live process holds it (the message names it and the lock file).
        """
        if self.held:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._holder()
                if not self._stale(holder):
                    raise RuntimeError(
                        f"{self.path.parent} is in use by another run ({_describe(holder)}; lock file {self.path}): "
                        "two runs writing one folder would mix their rounds; use another folder, or remove the "
                        "lock file if that run is gone"
                    ) from None
                gone = f"{self.path}: taking over the lock of a run that no longer exists ({_describe(holder)})"
                warnings.warn(gone, stacklevel=2)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as file:
                json.dump(self.owner, file)
            self.held = True
            return
        raise RuntimeError(f"{self.path}: could not take the lock (another run took it first)")

    def release(self) -> None:
        if self.held and self._holder() == self.owner:
            self.path.unlink(missing_ok=True)
        self.held = False

    def _holder(self) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    @staticmethod
    def _stale(holder: dict[str, Any] | None) -> bool:
        """Whether the holder is certainly gone: an unreadable lock, or a pid of this host that is not running."""
        if holder is None:
            return True
        if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
            return False
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # it exists, under another user
        return False


def _describe(holder: dict[str, Any] | None) -> str:
    return "unknown owner" if holder is None else f"pid {holder.get('pid')} on {holder.get('host')}"


def round_paths(directory: str | Path) -> list[Path]:
    """The round folders of ``directory`` in round order (temporary folders of unfinished saves are skipped).

    Raises:
        FileNotFoundError: ``directory`` does not exist or holds no rounds.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such rounds directory")
    paths = [p for p in directory.iterdir() if p.is_dir() and _ROUND_NAME.fullmatch(p.name)]
    if not paths:
        raise FileNotFoundError(f"{directory}: holds no rounds (no round_NNNNNN folders)")
    return sorted(paths, key=_round_index)


def load_rounds(directory: str | Path) -> Iterator[tuple[int, list[BehaviourSample]]]:
    """Lazily yield ``(round index, samples)`` for every round of ``directory``, in round order.

    The folders are listed now (so a missing directory fails at the call), each round is read when its turn
    comes; rounds saved after the call are not seen.
    """
    paths = round_paths(directory)
    return ((_round_index(path), load_round(path)) for path in paths)


def _datasets() -> ModuleType:
    """The ``datasets`` module, imported on first use (the GPU image lacks it)."""
    import datasets

    return datasets


@contextmanager
def _quiet(datasets: ModuleType) -> Iterator[None]:
    """Hide ``datasets``' progress bars for one save or load (a bar per round is noise in a training log)."""
    if datasets.are_progress_bars_disabled() or datasets.config.HF_DATASETS_DISABLE_PROGRESS_BARS is not None:
        yield  # already off, or the environment variable decides
        return
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.enable_progress_bars()


@cache
def _field_types() -> dict[str, type]:
    """Field name -> its Python type, ``X | None`` unwrapped to ``X`` (Tensor for the tensor fields)."""
    hints = get_type_hints(BehaviourSample)
    types = {}
    for f in fields(BehaviourSample):
        args = [a for a in get_args(hints[f.name]) or (hints[f.name],) if a is not type(None)]
        if len(args) != 1 or not (args[0] is Tensor or args[0] in _SCALARS):
            raise TypeError(f"BehaviourSample.{f.name}: persistence cannot store type {hints[f.name]}")
        types[f.name] = args[0]
    return types


def _tensor_dtype(name: str) -> torch.dtype:
    """The stored dtype of a tensor field: token ids (``*_ids``) int64, everything else float32."""
    return torch.int64 if name.endswith("_ids") else torch.float32


def _features(datasets: ModuleType) -> Any:
    """The ``datasets.Features`` of a round: a value per scalar field, a list per tensor field."""
    features = {}
    for name, kind in _field_types().items():
        value = str(_tensor_dtype(name)).removeprefix("torch.") if kind is Tensor else _SCALARS[kind]
        features[name] = datasets.Sequence(datasets.Value(value)) if kind is Tensor else datasets.Value(value)
    return datasets.Features(features)


def _columns(samples: Sequence[BehaviourSample]) -> dict[str, list[Any]]:
    """Field name -> [N] Python values (tensors as lists, None kept)."""
    types = _field_types()
    return {
        name: [_cell(name, getattr(s, name)) if kind is Tensor else getattr(s, name) for s in samples]
        for name, kind in types.items()
    }


def _cell(name: str, value: Tensor | None) -> list[int] | list[float] | None:
    """A tensor field's value as a list in the field's dtype (None stays None)."""
    if value is None:
        return None
    dtype = _tensor_dtype(name)
    if value.ndim != 1 or value.is_floating_point() != dtype.is_floating_point:
        raise ValueError(f"{name}: expected a 1-D {dtype} tensor, got {value.dtype} of shape {list(value.shape)}")
    return value.detach().to("cpu", dtype).tolist()


def _write(columns: dict[str, list[Any]], rows: int, path: Path, round_index: int, tokenizer: str | None) -> None:
    """Save the columns as an Arrow dataset in ``path`` with the version file beside it, flushed to disk."""
    datasets = _datasets()
    dataset = datasets.Dataset.from_dict(columns, features=_features(datasets))
    with _quiet(datasets):
        dataset.save_to_disk(str(path), num_shards=1 if rows == 0 else None)  # 0 rows: datasets writes no shard
    meta = {"version": FORMAT_VERSION, "round": round_index, "rows": rows, "tokenizer": tokenizer}
    (path / META_FILE).write_text(json.dumps(meta) + "\n")
    for file in path.iterdir():
        _fsync(file)
    _fsync(path)


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's entries to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_meta(path: Path) -> dict[str, Any]:
    """The round's version file, checked for this format's version."""
    file = path / META_FILE
    if not file.is_file():
        raise ValueError(f"{path}: no {META_FILE}, not a round saved by save_round")
    try:
        meta = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}: not valid JSON ({err})") from err
    version = meta.get("version") if isinstance(meta, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {version!r}, this code reads version {FORMAT_VERSION}")
    return meta


def _check_columns(path: Path, names: Sequence[str]) -> None:
    """Fail unless the stored columns are exactly BehaviourSample's fields."""
    expected = list(_field_types())
    missing = [n for n in expected if n not in names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    unknown = [n for n in names if n not in expected]
    if unknown:
        raise ValueError(f"{path}: unknown column(s) {', '.join(unknown)} (written by a newer BehaviourSample?)")


def _sample(columns: dict[str, list[Any]], row: int) -> BehaviourSample:
    """Row ``row`` of the columns as a BehaviourSample, lists back to tensors."""
    values = {}
    for name, kind in _field_types().items():
        value = columns[name][row]
        tensor = kind is Tensor and value is not None
        values[name] = torch.tensor(value, dtype=_tensor_dtype(name)) if tensor else value  # [P] or [R]
    return BehaviourSample(**values)


def _round_index(path: Path) -> int:
    """The round index in a round folder's name."""
    return int(_ROUND_NAME.fullmatch(path.name).group(1))
