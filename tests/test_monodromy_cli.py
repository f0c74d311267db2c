"""`narrowflow monodromy`: report on stdout, figure and report file, config errors."""

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


ONE_POINT = """
[network]
width = 2
activation = "tanh"

[data]
x = [1.0]
teacher = {width = 2, activation = "tanh", theta = [1.0, 1.5, 0.5, -0.7]}
"""


def test_plain_command_escalates_until_a_step_decides(tmp_path, capsys):
    # one data point: the first VE is abelian (step 1 silent), order 2 decides (step 2)
    cfg = tmp_path / "one.toml"
    cfg.write_text(ONE_POINT)
    out = tmp_path / "out"
    assert main(["monodromy", str(cfg), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "step 1 [silent ] order 1, twin plane" in text
    assert "step 2 [DECIDED] order 2" in text
    assert "VERDICT: G⁰(VE_2) non-abelian ⇒ not integrable (decided at step 2" in text
    assert "order 3" not in text.split("ESCALATION SUMMARY")[1]       # stopped at step 2
    assert "coordinate-free: Φ1 = I within error, Φ2 ≠ 0" in text
    png = out / "monodromy_loops.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"


def test_plain_command_says_why_no_step_decides(tmp_path, capsys):
    # the linear network (a control): the first VE and the 2-jets commute, every step is silent
    cfg = tmp_path / "lin.toml"
    cfg.write_text(ONE_POINT.replace('activation = "tanh"\n\n[data]', 'activation = "linear"\n\n[data]', 1))
    assert main(["monodromy", str(cfg), "--no-figure", "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    summary = text.split("ESCALATION SUMMARY")[1]
    assert "[DECIDED]" not in summary
    assert "VERDICT: no step decided (the test is one-sided" in summary
    assert "why:" in summary


def test_plain_command_without_config_decides_on_the_builtin_example(tmp_path, capsys):
    # no CONFIG: the built-in example (NF4 on 3 data points) is announced, with the one line
    # on the 16-point preset, and the escalation decides at order 2 from the computation
    out = tmp_path / "out"
    assert main(["monodromy", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    head = text.split("[step 1]")[0]
    assert "built-in monodromy example" in head and "x = [-1, 0.5, 2]" in head
    assert "16-point NF4 training preset, where no step decides" in head
    assert "Dataset(n=3," in head
    summary = text.split("ESCALATION SUMMARY")[1]
    assert "step 1 [silent ] order 1, twin plane" in summary
    assert "step 2 [DECIDED] order 2" in summary
    assert "VERDICT: G⁰(VE_2) non-abelian ⇒ not integrable (decided at step 2" in summary
    assert "order 2: 3584.1" in text                     # the README's commutator
    png = out / "monodromy_loops.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    report = (out / "monodromy_report.txt").read_text()
    assert report.startswith("no CONFIG: the built-in monodromy example")
    assert "VERDICT: G⁰(VE_2) non-abelian" in report


def test_nf4_training_preset_stays_silent_and_says_why(tmp_path, capsys):
    # the 16-point preset through a config: order 1 abelian, the lassos around the branch
    # points do not close, so order 2 has one verified loop and order 3 is skipped
    cfg = tmp_path / "nf4.toml"
    cfg.write_text('preset = "nf4"\n')
    assert main(["monodromy", str(cfg), "--no-figure", "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert "built-in monodromy example" not in text and "Dataset(n=16," in text
    summary = text.split("ESCALATION SUMMARY")[1]
    assert "[DECIDED]" not in summary
    assert "fewer than two verified loops (excluded loops: around" in summary
    assert "no closure within 8 turns" in summary
    assert "step 3 [silent ] order 3, the same loops: skipped" in summary
    assert "VERDICT: no step decided (the test is one-sided" in summary
