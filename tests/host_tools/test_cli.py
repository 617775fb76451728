import subprocess
import sys

from wearface.host_tools.cli import main


def test_nets_verb_prints_model_a(capsys):
    assert main(["nets", "A"]) == 0
    out = capsys.readouterr().out
    assert "fc1" in out and "seed 49.3M" in out


def test_unknown_net_is_one_line_error(capsys):
    assert main(["nets", "Z"]) != 0
    err = capsys.readouterr().err
    assert "unknown net" in err and "Traceback" not in err


def test_console_script_installed():
    out = subprocess.run([sys.executable, "-m", "wearface.host_tools", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "nets" in out.stdout
