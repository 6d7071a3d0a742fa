"""Weights folders: safetensors + config.json round trip, and clear errors for every way loading can fail."""

from __future__ import annotations

import json
import os
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from perception import TemporalPerception, WeightsError, build_model, load_weights, read_weights_config, save_weights
from perception.weights import half_precision_copy, weights_record

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("lite")
    folder = tmp_path_factory.mktemp("weights") / "lite"
    save_weights(model, folder, training_data={"backend": "embedded", "towns": ["Town_A"]}, metrics={"miou": 0.5})
    return model, folder


def test_round_trip_and_config(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_weights(folder, preset="lite")
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=False):
        assert k == k2 and torch.equal(a, b)
    cfg = read_weights_config(folder)
    assert cfg["preset"] == "lite" and cfg["num_classes"] == 22 and cfg["class_names"][7] == "Road"
    assert cfg["input_size"] == [128, 256] and cfg["normalization"]["mean"][0] == pytest.approx(0.485)
    assert cfg["training_data"]["towns"] == ["Town_A"] and cfg["metrics"] == {"miou": 0.5}
    assert cfg["software_version"] and loaded.weights_config == cfg


def test_half_precision_copy_halves_the_file_and_loads_back(saved, tmp_path):
    model, folder = saved
    half = half_precision_copy(folder, tmp_path / "half")
    stored = load_file(str(half / "model.safetensors"))
    assert all(t.dtype in (torch.float16, torch.int64) for t in stored.values())
    assert (half / "model.safetensors").stat().st_size < 0.55 * (folder / "model.safetensors").stat().st_size
    assert read_weights_config(half)["storage_dtype"] == "float16"
    loaded = load_weights(half)
    for k, a in model.state_dict().items():  # back in float32, within float16's rounding
        b = loaded.state_dict()[k]
        assert b.dtype == a.dtype and torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-4), k


def test_weights_record_names_the_folder_relative_to_the_working_directory_and_its_tensors(
    saved, tmp_path, monkeypatch
):
    _, folder = saved
    half = half_precision_copy(folder, tmp_path / "runs" / "half")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # `folder` under neither: named as given
    inside, outside = weights_record(half.resolve()), weights_record(folder)
    assert inside["weights"] == "runs/half" and outside["weights"] == str(folder)  # outside: as given
    assert len(inside["weights_sha256"]) == 64 and inside["weights_sha256"] != outside["weights_sha256"]
    assert weights_record("runs/half") == inside


def test_both_files_get_the_umask_mode(tmp_path):
    """safetensors writes its file 0600; a weights folder meant for sharing gets 0666 less the umask for both."""
    old = os.umask(0o022)
    try:
        folder = save_weights(build_model("lite"), tmp_path / "w")
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == {
        "config.json": 0o644,
        "model.safetensors": 0o644,
    }


def test_file_is_safetensors_not_pickle(saved):
    raw = (saved[1] / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert raw[8:9] == b"{" and json.loads(raw[8 : 8 + n])


def test_from_weights(saved):
    tp = TemporalPerception.from_weights(saved[1], input_size=(64, 128))
    assert tp.step(torch.zeros(1, 40, 60, 3, dtype=torch.uint8)).labels.shape == (1, 64, 128)


def test_preset_mismatch(saved):
    with pytest.raises(WeightsError, match="preset 'lite', not 'full'"):
        load_weights(saved[1], preset="full")


def test_shape_mismatch_names_the_tensor(saved):
    other = build_model("lite", num_classes=5)
    with pytest.raises(WeightsError, match=r"seg_head\.head\..*shape"):
        load_weights(saved[1], model=other)


def test_missing_tensor_named(saved, tmp_path):
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "config.json").write_text((saved[1] / "config.json").read_text())
    tensors = load_file(str(saved[1] / "model.safetensors"))
    first = next(iter(saved[0].state_dict()))
    del tensors[first]
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(WeightsError, match=f"missing tensor '{first}'"):
        load_weights(folder)


def test_missing_folder_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_weights(tmp_path / "nowhere")


def test_corrupt_files_name_path(saved, tmp_path):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    (folder / "config.json").write_text((saved[1] / "config.json").read_text())
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00not a safetensors file")
    with pytest.raises(WeightsError, match="corrupt.model.safetensors"):
        load_weights(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(WeightsError, match="corrupt.config.json"):
        load_weights(folder)


def test_refuses_folded_models_and_unknown_architecture_keys(saved, tmp_path):
    tp = TemporalPerception(saved[0], input_size=(64, 128))  # folds BatchNorm into a copy
    with pytest.raises(ValueError, match="folded"):
        save_weights(tp.model, tmp_path / "folded")
    folder = tmp_path / "newer"
    folder.mkdir()
    cfg = json.loads((saved[1] / "config.json").read_text())
    cfg["architecture"]["attention_heads"] = 8
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "model.safetensors").write_bytes((saved[1] / "model.safetensors").read_bytes())
    with pytest.raises(WeightsError, match="attention_heads"):
        load_weights(folder)


def test_weights_saved_before_the_motion_fields_load_with_the_original_ego_motion_input(tmp_path):
    """A config.json without `motion_difference` / `motion_detail` (every weights folder saved before they existed,
    the bundled ones among them) builds the original ego-motion input: (previous, current) of the embedding alone."""
    model = build_model("lite", motion_difference=False, motion_detail=None)
    folder = tmp_path / "old"
    save_weights(model, folder)
    config = json.loads((folder / "config.json").read_text())
    del config["architecture"]["motion_difference"], config["architecture"]["motion_detail"]
    (folder / "config.json").write_text(json.dumps(config))
    loaded = load_weights(folder)
    assert not loaded.ego_motion_filter.difference and loaded.geometry_filter.motion_channels == 96
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )


def test_weights_with_their_own_segmentation_skips_load_and_stream_as_built(tmp_path):
    """The architecture's overrides travel in config.json: the loaded model has the stride-4 segmentation decoder
    it was built with (not the preset's stride-2 one), and the streaming API upsamples its labels to the input size
    like any other."""
    torch.manual_seed(0)
    model = build_model("lite", seg_skip_names=("s8", "s4"), seg_decoder_widths=(64, 48, 32))
    save_weights(model, tmp_path / "finer")
    loaded = load_weights(tmp_path / "finer")
    assert read_weights_config(tmp_path / "finer")["architecture"]["seg_skip_names"] == ["s8", "s4"]
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    frames = torch.randint(0, 255, (2, 1, 128, 256, 3), dtype=torch.uint8).numpy()
    labels = {}
    for engine in ("torch", "onnxruntime"):
        stream = TemporalPerception(loaded, engine=engine, cache_dir=tmp_path / "cache")
        outs = [stream.step(frame) for frame in frames]
        assert outs[-1].seg_probs.shape[-2:] == (32, 64) and outs[-1].labels.shape == (1, 128, 256)
        labels[engine] = outs[-1].labels
    assert (labels["torch"] == labels["onnxruntime"]).float().mean() > 0.999
