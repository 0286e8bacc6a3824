"""Image embeddings for the memorization audit and the plausibility pre-screen, cached in the database.

Three backends, chosen by a spec string (``--embedding``):

``vit``
    imagededup's ``CNN`` with its ``ViT`` CustomModel (torchvision ``vit_b_16`` with the
    IMAGENET1K_SWAG_E2E_V1 weights, mean of all encoder tokens, 768-d), as in the paper. The weights are read
    from the torch hub cache (``$TORCH_HOME/hub/checkpoints/vit_b_16_swag-9ac1b537.pth``) or from a given
    file; nothing is ever downloaded (torch.hub's downloader is blocked while the model is built). Our
    canonical images are square (256x256), so the transform's resize-to-384 + center-crop loses nothing.
``pixel`` / ``pixel64``
    weights-free: the image downsampled by area averaging to 32x32 (or 64x64), zero-mean, unit-norm, so the
    cosine similarity is the Pearson correlation of the thumbnails -- the pixel-space distance used in the
    diffusion-memorization literature. Always available.
``PATH``
    a user's TorchScript encoder, called on a float32 batch (N, C, S, S) scaled to [0, 1] (C and S from
    ``[audit] encoder_channels`` / ``encoder_size``, default 1 and 256); its output is flattened to (N, D).

Vectors are stored in the ``embeddings`` table keyed by (image id, model name). Image ids are content
hashes (real) or (run, index) of bit-reproducible samples (synthetic), so the cache never goes stale.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from core.errors import CspineError
from core.files import sha256_file
from core.study import Study

VIT_WEIGHTS_FILE = "vit_b_16_swag-9ac1b537.pth"
VIT_SHA256_PREFIX = "9ac1b537"  # torch hub names files <name>-<first 8 hex digits of their SHA-256>.pth
VIT_MODEL_NAME = "imagededup-vit_b_16-swag"

Progress = Callable[[int, int, str], None]


class EmbeddingStopped(Exception):
    """Raised by :func:`embed` when its ``should_stop`` hook says so; everything encoded so far is cached."""


# ---------------------------------------------------------------------------------------------------
# Image loading


def load_gray(path: Path) -> np.ndarray:
    """An image file as a 2-D uint8 array (CspineError naming the file if it cannot be read)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"), dtype=np.uint8)
    except FileNotFoundError:
        raise CspineError(f"image file {path} is missing; restore it or re-run the step that wrote it") from None
    except (OSError, ValueError) as exc:
        raise CspineError(f"cannot read image {path} ({exc}); replace or remove it") from None


def load_rgb(path: Path) -> np.ndarray:
    """As imagededup's own loader does: non-RGB images go through RGBA to RGB; uint8 (H, W, 3)."""
    try:
        with Image.open(path) as im:
            if im.mode != "RGB":
                im = im.convert("RGBA").convert("RGB")
            return np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise CspineError(f"image file {path} is missing; restore it or re-run the step that wrote it") from None
    except (OSError, ValueError) as exc:
        raise CspineError(f"cannot read image {path} ({exc}); replace or remove it") from None


# ---------------------------------------------------------------------------------------------------
# Encoders


@dataclass
class Encoder:
    """Turns image files into float32 vectors, one row per file. ``name`` keys the cache."""

    name: str
    batch_size: int = 64

    def encode(self, paths: Sequence[Path]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class PixelEncoder(Encoder):
    size: int = 32

    def encode(self, paths: Sequence[Path]) -> np.ndarray:
        out = np.zeros((len(paths), self.size * self.size), dtype=np.float32)
        for i, path in enumerate(paths):
            out[i] = pixel_vector(load_gray(path), self.size)
        return out


def pixel_vector(image: np.ndarray, size: int = 32) -> np.ndarray:
    """Area-downsampled, zero-mean, unit-norm thumbnail of a 2-D uint8 image (a flat image gives zeros)."""
    thumb = Image.fromarray(np.asarray(image, dtype=np.uint8)).resize((size, size), Image.Resampling.BOX)
    vec = np.asarray(thumb, dtype=np.float32).ravel()
    vec = vec - vec.mean()
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


@dataclass
class ImagededupEncoder(Encoder):
    """Any imagededup ``CustomModel`` run through imagededup's ``CNN`` (its preprocessing, device, model).

    imagededup encodes only whole directories; we batch our own file list through the same
    ``apply_preprocess`` and ``model`` the CNN object holds, under ``torch.no_grad``.
    """

    model_config: Any = None
    _cnn: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from imagededup.methods import CNN

        self._cnn = CNN(verbose=False, model_config=self.model_config)
        logging.getLogger("imagededup.methods.cnn").setLevel(logging.WARNING)  # no INFO chatter on stderr
        self._cnn.model.eval()

    def encode(self, paths: Sequence[Path]) -> np.ndarray:
        import torch

        batch = torch.stack([self._cnn.apply_preprocess(load_rgb(p)) for p in paths]).to(self._cnn.device)
        with torch.no_grad():
            feats = self._cnn.model(batch)
        return feats.float().cpu().numpy().reshape(len(paths), -1).astype(np.float32, copy=False)


@dataclass
class TorchScriptEncoder(Encoder):
    path: Path = Path()
    channels: int = 1
    size: int = 256
    _module: Any = field(default=None, repr=False)
    _device: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        import torch

        self._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            with warnings.catch_warnings():  # torch >= 2.9 calls TorchScript deprecated; users' files still load
                warnings.simplefilter("ignore", FutureWarning)
                self._module = torch.jit.load(str(self.path), map_location=self._device).eval()
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
            raise CspineError(f"{self.path} is not a loadable TorchScript module ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}); save your encoder with "
                              f"torch.jit.script(model).save(path) or torch.jit.trace") from None

    def encode(self, paths: Sequence[Path]) -> np.ndarray:
        import torch

        arrays = []
        for p in paths:
            img = Image.fromarray(load_gray(p))
            if img.size != (self.size, self.size):
                img = img.resize((self.size, self.size), Image.Resampling.BILINEAR)
            arrays.append(np.asarray(img, dtype=np.float32) / 255.0)
        x = torch.from_numpy(np.stack(arrays))[:, None].expand(-1, self.channels, -1, -1).contiguous()
        try:
            with torch.no_grad():
                out = self._module(x.to(self._device))
        except Exception as exc:  # noqa: BLE001
            raise CspineError(f"TorchScript encoder {self.path} failed on a batch of shape {tuple(x.shape)} "
                              f"({type(exc).__name__}); set [audit] encoder_channels / encoder_size in "
                              f"study.toml (or --encoder-channels/--encoder-size) to what it expects") from None
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.float().cpu().numpy().reshape(len(paths), -1).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------------
# ViT weights: found locally or a clear error, never a download


def hub_checkpoints_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def vit_weights_info() -> dict[str, Any]:
    """What the ViT weights file is, from torchvision's weight enum (url, size) and its file name (hash)."""
    from torchvision.models import ViT_B_16_Weights

    w = ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1
    return {"file": w.url.rsplit("/", 1)[-1], "url": w.url, "size_mb": w.meta.get("_file_size"),
            "sha256_prefix": VIT_SHA256_PREFIX, "license": w.meta.get("license"),
            "enum": "torchvision ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1"}


def missing_vit_message(folder: Path) -> str:
    info = vit_weights_info()
    return (f"the ViT weights {info['file']} ({info['enum']}, {info['size_mb']} MB, SHA-256 beginning "
            f"{info['sha256_prefix']}) are not in the torch hub cache {folder}; cspine-tui never downloads "
            f"weights: fetch {info['url']} on a machine with internet, copy it into {folder}/ (or set "
            f"TORCH_HOME, or pass --vit-weights FILE), or audit without weights with --embedding pixel")


def find_vit_weights(weights: Path | str | None = None) -> Path:
    """The ViT weights file to use (given or cached), checked against its SHA-256 prefix."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise CspineError(f"ViT weights file {path} does not exist; expected a copy of "
                              f"{VIT_WEIGHTS_FILE} (see `cspine-tui audit --help`)")
    else:
        folder = hub_checkpoints_dir()
        path = folder / VIT_WEIGHTS_FILE
        if not path.is_file():
            raise CspineError(missing_vit_message(folder))
    digest = sha256_file(path)
    if not digest.startswith(VIT_SHA256_PREFIX):
        raise CspineError(f"{path} has SHA-256 {digest}, not one beginning {VIT_SHA256_PREFIX} "
                          f"({VIT_WEIGHTS_FILE}); the file is truncated or a different model: replace it")
    return path


@contextlib.contextmanager
def _downloads_forbidden() -> Iterator[None]:
    """Make torch.hub (which torchvision and so imagededup use) raise instead of downloading."""
    import torch.hub

    original = torch.hub.download_url_to_file

    def refuse(url: str, dst: str, *args: Any, **kwargs: Any) -> None:
        raise CspineError(f"refusing to download {url}: cspine-tui never downloads weights; "
                          f"place the file at {dst} yourself")

    torch.hub.download_url_to_file = refuse
    try:
        yield
    finally:
        torch.hub.download_url_to_file = original


@contextlib.contextmanager
def _hub_dir_with(weights: Path, cache_root: Path) -> Iterator[None]:
    """A private torch hub folder holding a link to the given weights, so imagededup's ViT() finds them."""
    import torch.hub

    checkpoints = cache_root / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    link = checkpoints / VIT_WEIGHTS_FILE
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(weights.resolve())
    previous = getattr(torch.hub, "_hub_dir", None)  # None means "derive from TORCH_HOME", keep it so
    torch.hub.set_dir(str(cache_root))
    try:
        yield
    finally:
        torch.hub._hub_dir = previous


def vit_encoder(weights: Path | str | None = None, *, cache_root: Path | None = None,
                batch_size: int = 32) -> ImagededupEncoder:
    """imagededup's ViT through its CNN, from local weights only (CspineError naming the file otherwise)."""
    path = find_vit_weights(weights)
    from imagededup.utils.models import CustomModel, ViT

    override = (_hub_dir_with(path, cache_root or path.parent / ".cspine-hub")
                if weights is not None else contextlib.nullcontext())
    with _downloads_forbidden(), override:
        try:
            model = ViT()
        except CspineError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt file fails inside torch.load
            raise CspineError(f"cannot load the ViT weights {path} ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}); replace the file") from None
    return ImagededupEncoder(name=VIT_MODEL_NAME, batch_size=batch_size,
                             model_config=CustomModel(name=ViT.name, model=model, transform=ViT.transform))


def make_encoder(spec: str, study: Study | None = None, *, vit_weights: Path | str | None = None,
                 encoder_channels: int | None = None, encoder_size: int | None = None) -> Encoder:
    """An encoder from a spec: ``vit``, ``pixel``/``pixel32``/``pixel64``, or a TorchScript file path."""
    spec = (spec or "").strip()
    if spec == "vit":
        weights = vit_weights or (study.get("audit", "vit_weights") if study else None)
        cache_root = study.cache_dir / "torch-hub" if study else None
        return vit_encoder(weights, cache_root=cache_root)
    if spec in ("pixel", "pixel32", "pixel64"):
        size = 64 if spec == "pixel64" else 32
        return PixelEncoder(name=f"pixel{size}", batch_size=256, size=size)
    path = Path(spec).expanduser()
    if not spec or not path.is_file():
        raise CspineError(f"--embedding {spec!r} is not 'vit', 'pixel', 'pixel64' or an existing TorchScript "
                          f"file; pick one of those")
    channels = int(encoder_channels or (study.get("audit", "encoder_channels", 1) if study else 1))
    size = int(encoder_size or (study.get("audit", "encoder_size", 256) if study else 256))
    if channels not in (1, 3) or not 8 <= size <= 4096:
        raise CspineError(f"encoder channels must be 1 or 3 and size 8..4096 (got {channels}, {size})")
    digest = sha256_file(path)[:16]
    return TorchScriptEncoder(name=f"torchscript-{digest}-c{channels}s{size}", batch_size=32, path=path,
                              channels=channels, size=size)


# ---------------------------------------------------------------------------------------------------
# Cached embedding of study images


def cached_vectors(study: Study, model: str, ids: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Stored vectors of one model (all of them, or those of ``ids``)."""
    sql = "SELECT image_id, vector FROM embeddings WHERE model = ?"
    params: list[Any] = [model]
    if ids is not None:
        if not ids:
            return {}
        sql += " AND list_contains(?, image_id)"
        params.append(list(ids))
    cols = study.store.fetch_numpy(sql, params)
    return {str(i): np.asarray(v, dtype=np.float32) for i, v in zip(cols["image_id"], cols["vector"])}


def store_vectors(study: Study, model: str, ids: Sequence[str], vectors: np.ndarray) -> None:
    """One short transaction for a batch, through a registered DataFrame (executemany is ~100x slower)."""
    if not len(ids):
        return
    import pandas as pd

    frame = pd.DataFrame({"image_id": list(ids), "vector": list(np.asarray(vectors, dtype=np.float32))})
    with study.store.connect() as tx:
        tx.register("cspine_vectors", frame)
        tx.execute("INSERT OR REPLACE INTO embeddings (image_id, model, vector) "
                   "SELECT image_id, ?, vector::FLOAT[] FROM cspine_vectors", [model])


def embed(study: Study, encoder: Encoder, items: Sequence[tuple[str, str]], *,
          progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
          label: str = "embedding") -> np.ndarray:
    """Vectors (n, d) for ``items`` = [(image_id, path relative to the study)], in that order.

    Cached vectors are reused; missing ones are encoded in batches, each batch stored at once, so an
    interrupted run (``should_stop`` -> :class:`EmbeddingStopped`) resumes where it stopped.
    """
    ids = [i for i, _ in items]
    have = cached_vectors(study, encoder.name, ids)
    todo = [(i, p) for i, p in items if i not in have]
    total, done = len(items), len(items) - len(todo)
    if progress:
        progress(done, total, f"{label}: {done} cached")
    for start in range(0, len(todo), encoder.batch_size):
        if should_stop is not None and should_stop():
            raise EmbeddingStopped(f"{label}: stopped after {done} of {total}")
        batch = todo[start:start + encoder.batch_size]
        vecs = encoder.encode([study.abs(p) for _, p in batch])
        if vecs.shape[0] != len(batch) or not np.all(np.isfinite(vecs)):
            raise CspineError(f"encoder {encoder.name} returned {vecs.shape} with non-finite values for "
                              f"{len(batch)} images (first {batch[0][1]}); check the model")
        store_vectors(study, encoder.name, [i for i, _ in batch], vecs)
        have.update({i: v for (i, _), v in zip(batch, vecs)})
        done += len(batch)
        if progress:
            progress(done, total, f"{label} {done}/{total}")
    if not items:
        return np.zeros((0, 0), dtype=np.float32)
    dims = {have[i].shape[0] for i in ids}
    if len(dims) != 1:
        raise CspineError(f"cached embeddings of model {encoder.name} have mixed sizes {sorted(dims)}; "
                          f"clear them with `cspine-tui audit --clear-cache`")
    return np.stack([have[i] for i in ids]).astype(np.float32, copy=False)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def clear_cache(study: Study, model: str | None = None) -> int:
    with study.store.connect() as tx:
        n = tx.scalar("SELECT count(*) FROM embeddings" + (" WHERE model = ?" if model else ""),
                      [model] if model else None)
        tx.execute("DELETE FROM embeddings" + (" WHERE model = ?" if model else ""), [model] if model else None)
    return int(n)


def check_spec(spec: str, study: Study | None = None, *, vit_weights: Path | str | None = None) -> None:
    """Fail fast (before a job starts) when an embedding cannot be built: missing weights or file."""
    spec = (spec or "").strip()
    if spec == "vit":
        find_vit_weights(vit_weights or (study.get("audit", "vit_weights") if study else None))
    elif spec not in ("pixel", "pixel32", "pixel64") and not Path(spec).expanduser().is_file():
        raise CspineError(f"--embedding {spec!r} is not 'vit', 'pixel', 'pixel64' or an existing TorchScript "
                          f"file; pick one of those")
