"""Quantizing a (random-init) torch checkpoint on real face crops: the drift report and the CLI verb."""
from __future__ import annotations

import pytest

from wearface.host_tools import cli
from wearface.kernels import nets

torch = pytest.importorskip("torch", reason="quantize needs the train extra (torch)")
pytestmark = pytest.mark.needs_data


@pytest.fixture(scope="module")
def align_checkpoint(tmp_path_factory):
    from wearface.host_tools.train.torch_nets import build_torch_net

    torch.manual_seed(0)
    model = build_torch_net(nets.ALIGN_NET).eval()
    path = tmp_path_factory.mktemp("q") / "align_random.pt"
    torch.save({"config": {"net": "align", "batchnorm": True}, "model": model.state_dict()}, path)
    return path


def test_calibration_crops_have_each_nets_input_shape(shared_data):
    from wearface.host_tools.train import quantize as Q

    for spec in (nets.ALIGN_NET, nets.MODEL_A):
        images = Q.calibration_images(shared_data, spec, 2, seed=1)
        assert len(images) == 2 and all(im.shape == spec.input_shape and im.dtype.name == "uint8" for im in images)


def test_drift_report_has_a_row_per_layer_and_stays_close(shared_data, align_checkpoint, tmp_path):
    from wearface.host_tools.train import quantize as Q

    qnet, fnet = Q.quantize_checkpoint(align_checkpoint, shared_data, count=8)
    rows = Q.layer_drift(fnet, qnet, Q.calibration_images(shared_data, fnet.spec, 2, offset=8))
    assert [r.layer for r in rows] == [layer.name for layer in nets.ALIGN_NET.layers]
    assert all(r.cosine_min > 0.99 for r in rows)
    Q.save_drift_png(rows, tmp_path / "drift.png", "test")
    assert (tmp_path / "drift.png").read_bytes()[:4] == b"\x89PNG"
    assert "| conv1 | Conv | 50x50x4 |" in Q.drift_table(rows)


def test_quantize_verb_writes_table_and_png(shared_data, align_checkpoint, tmp_path, capsys):
    code = cli.main(["quantize", str(align_checkpoint), "--data", str(shared_data), "--calibration", "4",
                     "--drift-images", "2", "--out", str(tmp_path)])
    assert code == 0
    assert (tmp_path / "drift.md").is_file() and (tmp_path / "drift.png").is_file()
    assert "cosine mean" in capsys.readouterr().out


def test_bundle_build_from_a_checkpoint_records_provenance(shared_data, align_checkpoint, tmp_path, capsys):
    from wearface.firmware.bundle import read_bundle
    from wearface.host_tools.bundle.keys import DEV_PRIVATE_KEY

    out = tmp_path / "c.wfb"
    code = cli.main(["bundle", "build", "-o", str(out), "--align", str(align_checkpoint), "--embed", "random",
                     "--data", str(shared_data), "--calibration", "4", "--golden", "1",
                     "--key", str(DEV_PRIVATE_KEY)])
    assert code == 0, capsys.readouterr().err
    b = read_bundle(out.read_bytes())
    prov = b.manifest["provenance"]["align"]
    assert prov["kind"] == "checkpoint" and prov["file"] == "align_random.pt" and len(prov["sha256"]) == 64
    assert prov["calibration"]["images"] == 4
    assert any("non-commercial" in t for t in b.manifest["data_terms"])  # calibrated on CelebA
