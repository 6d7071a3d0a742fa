"""Inference engines of `TemporalPerception`: ONNX Runtime against PyTorch, the export cache, the fallback."""

from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from perception import TemporalPerception, build_model, onnx_engine
from perception.onnx_engine import OnnxStep, channel_softmax, fingerprint

SIZE = (64, 128)
BUNDLED = Path(__file__).resolve().parents[1] / "carla_gym" / "weights" / "lite"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.fixture(scope="module")
def trained() -> TemporalPerception:
    """The bundled trained weights (real activations and ego-motion), or a seeded untrained model."""
    if (BUNDLED / "model.safetensors").is_file():
        return TemporalPerception.from_weights(BUNDLED, input_size=SIZE, engine="torch")
    torch.manual_seed(0)
    return TemporalPerception(build_model("lite"), input_size=SIZE, engine="torch")


def like(ref: TemporalPerception, **kwargs) -> TemporalPerception:
    """Another `TemporalPerception` of the same (already folded) model."""
    return TemporalPerception(ref.model, input_size=ref.input_size, mean=ref.mean, std=ref.std, fuse=False, **kwargs)


def frames(n: int, seed: int, h: int = 64, w: int = 128) -> np.ndarray:
    """A smooth moving scene with noise: frames a trained model responds to with real ego-motion."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack(
        [np.sin(xx / 9 + seed * 0.3) * 90 + 120, yy / h * 200 + 20, np.cos(yy / 7 - seed * 0.2) * 80 + 110], -1
    )
    return np.clip(base[None] + rng.normal(0, 12, (n, h, w, 3)), 0, 255).astype(np.uint8)


def test_onnxruntime_matches_torch_over_a_stream_with_resets_and_subsets(trained, cache):
    ref, ort = like(trained, engine="torch"), like(trained, engine="onnxruntime", cache_dir=cache)
    assert ort.engine == "onnxruntime"
    moved = 0.0
    for t in range(20):
        x = frames(3, seed=t, h=72 if t % 3 == 0 else 64, w=144 if t % 3 == 0 else 128)  # resized or not
        streams = None
        if t == 5:
            for p in (ref, ort):
                p.reset(1)
        if t == 12:
            for p in (ref, ort):
                p.reset()
        if t in (8, 9):
            streams, x = [2, 0], x[:2]
        if t == 15:
            for p in (ref, ort):
                p.reset(2)
            streams, x = [2], x[:1]
        a, b = ref.step(x, streams=streams), ort.step(x, streams=streams)
        assert b.labels.dtype == torch.int64 and b.probs.shape == a.probs.shape
        assert (a.labels == b.labels).float().mean() >= 0.999, t
        assert ((a.depth - b.depth).abs() / a.depth).max() <= 1e-3, t
        assert (a.pose6 - b.pose6).abs().max() <= 1e-4, t
        assert (a.matrix - b.matrix).abs().max() <= 1e-4, t
        assert torch.allclose(a.features, b.features, atol=1e-3), t
        assert torch.allclose(a.probs, b.probs, atol=1e-3), t
        if t in (0, 12):  # every stream starts afresh
            assert not b.pose6.any()
        if t == 5:
            assert not b.pose6[1].any() and b.pose6[0].any()
        if t == 15:
            assert not b.pose6.any()
        moved = max(moved, float(a.pose6.abs().max()))
    assert moved > 1e-3  # the ego-motion check compared real motion, not zeros
    assert ort.num_streams == 3


def test_batch_size_and_state_are_per_stream(trained, cache):
    ort, alone = like(trained, cache_dir=cache), like(trained, cache_dir=cache)
    assert ort.engine == "onnxruntime"  # the default on the CPU
    for t in range(3):
        both = ort.step(frames(5, seed=t))
        one = alone.step(frames(5, seed=t)[3:4])
    assert torch.allclose(both.depth[3], one.depth[0], rtol=1e-4)
    assert torch.allclose(both.pose6[3], one.pose6[0], atol=1e-5)
    with pytest.raises(ValueError, match="distinct streams"):
        ort.step(frames(2, seed=0), streams=[0, 0])
    with pytest.raises(IndexError):
        ort.step(frames(1, seed=0), streams=[7])
    fresh = like(trained, cache_dir=cache)
    with pytest.raises(RuntimeError, match="all streams first"):
        fresh.step(frames(1, seed=0), streams=[0])


def test_channel_softmax_is_the_softmax_over_classes():
    logits = torch.tensor([[[[0.0]], [[1.0]], [[2.0]]], [[[1000.0]], [[1000.0]], [[-1000.0]]]])  # (2, 3, 1, 1)
    e = np.exp([0.0, 1.0, 2.0])
    expected = torch.tensor(np.array([e / e.sum(), [0.5, 0.5, 0.0]]), dtype=torch.float32)[..., None, None]
    assert torch.allclose(channel_softmax(logits), expected, atol=1e-7)  # no overflow at +-1000
    x = torch.randn(2, 22, 4, 8) * 5
    assert torch.allclose(channel_softmax(x), x.softmax(dim=1), atol=1e-6)


def test_the_exported_step_has_no_channel_softmax_node(trained, cache):
    import onnx

    step = OnnxStep(trained.model, SIZE, trained.mean, trained.std, cache_dir=cache)
    assert "Softmax" not in {node.op_type for node in onnx.load(step.path).graph.node}  # it transposes on the CPU


def test_export_is_cached_and_reused(trained, cache):
    first = OnnxStep(trained.model, SIZE, trained.mean, trained.std, cache_dir=cache, threads=2)
    again = OnnxStep(trained.model, SIZE, trained.mean, trained.std, cache_dir=cache)
    assert first.path == again.path and again.cache_hit and again.path.is_file()
    assert first.session.get_session_options().intra_op_num_threads == 2
    assert again.threads == torch.get_num_threads()  # follows torch unless given
    assert first.path.name == f"step-{first.key[:40]}.onnx"
    assert not list(cache.glob("*.tmp"))


def test_fingerprint_changes_with_weights_size_and_normalisation(trained):
    key = fingerprint(trained.model, SIZE, trained.mean, trained.std)
    assert fingerprint(trained.model, SIZE, trained.mean, trained.std) == key
    assert fingerprint(trained.model, (64, 96), trained.mean, trained.std) != key
    assert fingerprint(trained.model, SIZE, (0.5, 0.5, 0.5), trained.std) != key
    changed = copy.deepcopy(trained.model)
    assert fingerprint(changed, SIZE, trained.mean, trained.std) == key  # content, not identity
    with torch.no_grad():
        next(changed.parameters()).add_(1e-3)
    assert fingerprint(changed, SIZE, trained.mean, trained.std) != key


@pytest.mark.parametrize("content", ["garbage", "foreign"])
def test_a_damaged_or_foreign_cache_file_is_never_used(trained, tmp_path, content):
    torch.manual_seed(1)
    model = TemporalPerception(build_model("lite"), input_size=SIZE, engine="torch").model
    expected = tmp_path / f"step-{fingerprint(model, SIZE, trained.mean, trained.std)[:40]}.onnx"
    if content == "garbage":
        expected.write_bytes(b"not an onnx file")
    else:  # a valid export of other weights under this name
        other = OnnxStep(trained.model, SIZE, trained.mean, trained.std, cache_dir=tmp_path / "other")
        expected.write_bytes(other.path.read_bytes())
    step = OnnxStep(model, SIZE, trained.mean, trained.std, cache_dir=tmp_path)
    assert not step.cache_hit and step.path == expected
    assert OnnxStep(model, SIZE, trained.mean, trained.std, cache_dir=tmp_path).cache_hit  # replaced by the right one
    ref = TemporalPerception(model, input_size=SIZE, engine="torch", fuse=False)
    x = frames(1, seed=0)
    out = step.run(x.transpose(0, 3, 1, 2).astype(np.float32), step.zero_state(1), np.ones(1, bool))
    assert np.allclose(out["depth"], ref.step(x).depth.numpy(), rtol=1e-3)


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(onnx_engine.CACHE_ENV, str(tmp_path / "here"))
    assert onnx_engine.default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv(onnx_engine.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert onnx_engine.default_cache_dir() == tmp_path / "xdg" / "carla_perception_gym" / "onnx"


def test_unwritable_cache_warns_and_runs_uncached(trained, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    tp = like(trained, cache_dir=blocker / "onnx")
    with pytest.warns(RuntimeWarning, match="could not cache"):
        out = tp.step(frames(1, seed=0))
    assert tp.engine == "onnxruntime" and tp._onnx.path is None and out.depth.shape == (1, *SIZE)


@pytest.mark.parametrize("failure", ["missing", "export"])
def test_falls_back_to_torch_with_one_warning(trained, tmp_path, monkeypatch, failure):
    if failure == "missing":
        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as when not installed
    else:

        def broken(*args, **kwargs):
            raise RuntimeError("unsupported operator")

        monkeypatch.setattr(onnx_engine, "export_step", broken)
    tp, ref = like(trained, engine="onnxruntime", cache_dir=tmp_path), like(trained, engine="torch")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = [tp.step(frames(2, seed=t)) for t in range(3)]
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "runs on PyTorch" in messages[0] and tp.engine == "torch"
    refs = [ref.step(frames(2, seed=t)) for t in range(3)]
    assert all(torch.equal(a.depth, b.depth) for a, b in zip(outs, refs, strict=False))
    assert not list(tmp_path.iterdir())


def test_engine_choice_and_bad_options(trained):
    assert like(trained).engine == "onnxruntime"
    assert like(trained, autocast=True).engine == "torch"  # CPU autocast is a PyTorch feature
    assert like(trained, engine="torch").engine == "torch"
    with pytest.raises(ValueError, match="engine must be one of"):
        like(trained, engine="tensorrt")
    with pytest.raises(ValueError, match="runs in float32 on the CPU"):
        like(trained, engine="onnxruntime", autocast=True)
    with pytest.raises(ValueError, match="threads"):
        like(trained, threads=0)


@pytest.mark.parametrize("engine", ["torch", "onnxruntime", "auto"])
def test_env_perception_source_takes_the_engine(engine):
    from carla_gym.env.perception_source import make_perception

    if not (BUNDLED / "model.safetensors").is_file():
        pytest.skip("no bundled weights")
    source = make_perception("model", 2, (8, 16), device="cpu", engine=engine)
    assert source.model.engine == ("onnxruntime" if engine == "auto" else engine)
