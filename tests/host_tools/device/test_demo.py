"""``wearface demo`` end to end: the README's main command, with nothing but the installed packages."""
from __future__ import annotations

import io

import pytest


@pytest.mark.slow
def test_demo_flashes_enrols_recognises_and_forgets(tmp_path):
    from wearface.host_tools.device.demo import run_demo

    out = io.StringIO()
    assert run_demo(flash_dir=str(tmp_path), progress=False, out=out, plot=str(tmp_path / "demo.png")) == 0
    text = out.getvalue()
    assert "slot A confirmed" in text and "=== wearface demo: summary ===" in text
    assert "recognised grace" in text, text
    assert "-> unknown" in text, text          # forgotten, the same face is "don't know"
    assert "slots: active A, confirmed A, pending None, trial False" in text
    assert (tmp_path / "demo.png").stat().st_size > 10_000
