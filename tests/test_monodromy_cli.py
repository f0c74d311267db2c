"""`narrowflow monodromy`: report on stdout, figure and report file, config errors."""
import numpy as np
import pytest

from narrowflow.cli import main

CONFIG = """
[network]
width = 2
activation = "tanh"

[data]
x = [1.0]
y = [0.5]

[monodromy]
curve = "twin"
base = [0.8, 0.3]
"""


def test_monodromy_command_prints_report_and_draws(tmp_path, capsys):
    cfg = tmp_path / "one.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "out"
    assert main(["monodromy", str(cfg), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "integral curve: twin plane" in text
    assert "VERDICT: consistent with abelian G0 (no conclusion)" in text
    assert "EXCLUDED" in text and "USED" in text
    png = out / "monodromy_loops.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    assert "VERDICT" in (out / "monodromy_report.txt").read_text()


def test_monodromy_command_rejects_bad_config(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(CONFIG.replace('curve = "twin"', 'curvature = "twin"'))
    assert main(["monodromy", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "monodromy.curvature" in capsys.readouterr().err
    assert main(["monodromy", str(tmp_path / "missing.toml")]) == 2
    good = tmp_path / "good.toml"
    good.write_text(CONFIG)
    assert main(["monodromy", str(good), "--base", "1"]) == 2
    assert "--base" in capsys.readouterr().err
