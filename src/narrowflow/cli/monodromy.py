"""`narrowflow monodromy [CONFIG] [--order K] [--curve C] [--certify] [--out DIR]`: the
integrability test.

Builds the gradient flow from CONFIG (the keys of ``narrowflow run``). Without CONFIG it runs
the built-in monodromy example (EXAMPLE_TOML: NF4, width 2, tanh, on the three data points
x = [-1, 0.5, 2] with teacher θ = [1, 1.5, 0.5, -0.7]), a case where a step decides, and says
so; the 16-point NF4 training preset (a config with ``preset = "nf4"`` or an empty one) is a
case where no step decides (NF4_PRESET_SILENT says why). With neither ``--curve`` nor
``--order`` (nor a [monodromy] table choosing them) it ESCALATES until a step decides:

1. order 1 on the twin plane (``check_integrability``, the normal first VE);
2. order 2 along the unstable manifold of the twin-plane saddle (``saddle_unstable_check``);
3. order 3 along the same loops, when step 2 had at least two verified loops;

stopping at the first conclusive verdict, and prints which step decided and why the earlier
ones were silent. With ``--curve``/``--order`` it runs that one step. The figure shows the
loops of the deciding step (or of the last step tried), the loops whose commutator decided
drawn bold. ``--certify`` adds the ball-arithmetic enclosure (narrowflow.monodromy.certify;
needs python-flint) at the order of the step that decided (order 2 when none did) where the
flow is a case it can certify, and otherwise says why not.

An optional ``[monodromy]`` table in CONFIG sets the defaults of the options below:
``curve`` ("twin", "dead-neuron", "saddle-unstable"), ``order``, ``base`` ([a0, w0]),
``parametrization`` ("w"), ``rtol``.
"""
from __future__ import annotations

import sys
from pathlib import Path

#: The flow a ``narrowflow monodromy`` without CONFIG runs: NF4 (width 2, tanh) on three data
#: points with the README's teacher; order 2 decides it (the commutator 3584.17 ± 3.4e-3).
EXAMPLE_TOML = """
[network]
width = 2
activation = "tanh"

[data]
x = [-1.0, 0.5, 2.0]
teacher = {width = 2, activation = "tanh", theta = [1.0, 1.5, 0.5, -0.7]}
"""

EXAMPLE_SOURCE = "built-in monodromy example: NF4 on 3 data points"

#: What a plain ``narrowflow monodromy`` prints first when no CONFIG is given.
EXAMPLE_NOTE = (
    "no CONFIG: the built-in monodromy example, NF4 (width 2, tanh) on the 3 data points "
    "x = [-1, 0.5, 2] with teacher theta = [1, 1.5, 0.5, -0.7]: a case that order 2 decides, "
    "in seconds")

#: The next line: why the default is not the 16-point NF4 training preset.
NF4_PRESET_SILENT = (
    "not the 16-point NF4 training preset, where no step decides: the lassos around its saddle "
    "curve's branch points never close on the curve (none within 8 turns; up to 24 turns at "
    "radii 0.001-0.1 R tried), so order 2 has a single verified loop and no commutator; to run "
    "it anyway, pass a config holding the one line preset = \"nf4\"")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "monodromy", help="test integrability: monodromy of the variational equation",
        description="Monodromy of the (normal) variational equation along loops of an integral "
                    "curve in the complex domain, verified loop by loop, and what it says about "
                    "the Galois group (docs/math.md §5).")
    p.add_argument("config", nargs="?", default=None, metavar="CONFIG",
                   help="TOML config (network and data as for `narrowflow run`, optional "
                        "[monodromy] table); default: the built-in monodromy example (NF4 on "
                        "3 data points, where order 2 decides); preset = \"nf4\" in a config "
                        "gives the 16-point training preset")
    p.add_argument("--curve", default=None,
                   choices=("twin", "dead-neuron", "saddle-unstable"),
                   help="integral curve (default: twin)")
    p.add_argument("--order", type=int, default=None,
                   help="order of the variational equation (default 1)")
    p.add_argument("--base", default=None, metavar="A0,W0",
                   help="base point on the plane, e.g. 0.8,0.3 (complex allowed: 0.8+0.1j,0.3)")
    p.add_argument("--rtol", type=float, default=None, help="integration tolerance (1e-12)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder for the figure and the report text (default: "
                        "narrowflow-monodromy)")
    p.add_argument("--no-figure", action="store_true", help="do not draw the figure")
    p.add_argument("--certify", action="store_true",
                   help="add the ball-arithmetic enclosure of the deciding commutator at "
                        "the deciding step's order (python-flint; one-data-point width-2 tanh "
                        "networks, order 2); says why not where the flow is not certifiable")
    p.set_defaults(func=run)


def _split_config(path):
    """(RunConfig, monodromy options) from a TOML file (None: the built-in example,
    EXAMPLE_TOML).

    The [monodromy] table is validated with the rest by narrowflow.config; its keys
    left unset (None) are not passed on.
    """
    from narrowflow import config
    if path is None:
        rc = config.loads(EXAMPLE_TOML)
        rc.source = EXAMPLE_SOURCE
    else:
        rc = config.load(path)
    opts = {k: v for k, v in rc.cfg["monodromy"].items() if v is not None}
    if "rtol" in opts:
        opts["rtol"] = float(opts["rtol"])
    return rc, opts


def _parse_base(text):
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 2:
        raise ValueError(f"--base must be two numbers A0,W0, got {text!r}")
    try:
        return tuple(complex(p) for p in parts)
    except ValueError:
        raise ValueError(f"--base must be two numbers A0,W0, got {text!r}") from None


def draw(report, path) -> None:
    """Loops (used: solid; excluded: dashed), points with a = 0 (x), activation singularities (+)
    and the base point (o) in the complex parameter plane, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    fig, ax = plt.subplots(figsize=(7.0, 6.6))
    pts = [complex(report.base_parameter)]
    for rec in report.loops:
        z = rec.path.sample(800)
        pts += [z.min(), z.max(), complex(z.real.min(), z.imag.min()), complex(z.real.max(), z.imag.max())]
        ax.plot(z.real, z.imag, "-" if rec.used else "--", lw=1.4 if rec.used else 0.9,
                alpha=0.9, label=("used: " if rec.used else "excluded: ") + rec.name[:60])
    bp = np.asarray(report.branch_points or ([] if report.poles else report.singular_points),
                    dtype=complex)
    pts += list(bp)
    if bp.size:
        ax.plot(bp.real, bp.imag, "kx", ms=9, mew=2, label="a = 0 (branch points)")
    po = np.asarray(report.poles, dtype=complex)
    if po.size:
        ax.plot(po.real, po.imag, "+", color="gray", ms=8, mew=1.5,
                label="singularities of the activation")
    b = complex(report.base_parameter)
    ax.plot([b.real], [b.imag], "o", color="crimson", ms=7, label="base point", zorder=5)
    pts = np.asarray(pts)
    lo, hi = complex(pts.real.min(), pts.imag.min()), complex(pts.real.max(), pts.imag.max())
    pad = 0.15 * max(hi.real - lo.real, hi.imag - lo.imag, 0.5)
    ax.set_xlim(lo.real - pad, hi.real + pad)
    ax.set_ylim(lo.imag - pad, hi.imag + pad)
    ax.set_aspect("equal", adjustable="box")
    par = report.parametrization
    ax.set_xlabel(f"Re {par}")
    ax.set_ylabel(f"Im {par}")
    ax.grid(alpha=0.3)
    ax.set_title(f"{report.curve} plane: {report.verdict}", fontsize=9)
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def draw_saddle(report, path, decisive=None) -> None:
    """Loops of a saddle-unstable report in its Koenigs z-plane (verified: solid; the pair
    whose commutator decided: bold), the singularities (x), z = 0 (+) and the base point (o)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    fig, ax = plt.subplots(figsize=(7.0, 6.6))
    pts = [complex(report.base), 0j]
    for i, lp in enumerate(report.loops):
        if lp.path is None:
            continue
        z = lp.path.sample(1600)
        pts += [complex(z.real.min(), z.imag.min()), complex(z.real.max(), z.imag.max())]
        bold = decisive is not None and i in decisive
        tag = "decided: " if bold else ("verified: " if lp.verified else "excluded: ")
        turns = f" ({lp.turns} turns)" if lp.turns and lp.turns > 1 else ""
        ax.plot(z.real, z.imag, "-" if lp.verified else "--", lw=2.2 if bold else 0.9,
                alpha=1.0 if bold else 0.6, label=tag + lp.name + turns)
    sz = np.array([s.z for s in report.singularities], complex)
    if sz.size:
        ax.plot(sz.real, sz.imag, "kx", ms=9, mew=2, label="singularities z*")
        pts += list(sz)
    ax.plot([0], [0], "+", color="gray", ms=9, mew=1.5, label="z = 0 (the saddle)")
    b = complex(report.base)
    ax.plot([b.real], [b.imag], "o", color="crimson", ms=7, label="base point", zorder=5)
    pts = np.asarray(pts)
    lo, hi = complex(pts.real.min(), pts.imag.min()), complex(pts.real.max(), pts.imag.max())
    pad = 0.12 * max(hi.real - lo.real, hi.imag - lo.imag, 0.2)
    ax.set_xlim(lo.real - pad, hi.real + pad)
    ax.set_ylim(lo.imag - pad, hi.imag + pad)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("Re z")
    ax.set_ylabel("Im z")
    ax.grid(alpha=0.3)
    ax.set_title(f"unstable manifold, Koenigs plane, order {report.order}: {report.verdict}",
                 fontsize=9)
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _conclusive(verdict) -> bool:
    """Whether a step's verdict (a monodromy Verdict or JetVerdict; a plain string for steps
    that did not run) proves non-integrability."""
    return bool(getattr(verdict, "conclusive", False))


def _decisive_pair(report):
    """(i, j) of the commutator that decided a saddle-unstable report, or None."""
    if not _conclusive(report.verdict):
        return None
    for (i, j), C in report.commutators.items():
        if C.verdict(report.order) == report.verdict:
            return (i, j)
    return None


def escalate(flow, rtol=None, log=print):
    """Steps 1..3 (module docstring) until one decides. Returns (steps, decided): steps is a
    list of dicts (step, what, report or None, verdict, why); decided the index of the
    deciding step or None."""
    from narrowflow.monodromy.koenigs import saddle_unstable_check
    from narrowflow.monodromy.network import check_integrability
    kw = {} if rtol is None else {"rtol": rtol}
    steps = []

    def record(what, fn):
        log(f"[step {len(steps) + 1}] {what} ...", flush=True)
        try:
            rep = fn()
        except (ValueError, TypeError) as exc:
            steps.append(dict(step=len(steps) + 1, what=what, report=None, verdict="not applicable",
                              why=str(exc)))
        else:
            why = (rep.reason if hasattr(rep, "reason") else
                   "; ".join(getattr(rep.classification, "reasons", []) or [])
                   if rep.classification is not None else "")
            steps.append(dict(step=len(steps) + 1, what=what, report=rep, verdict=rep.verdict, why=why))
        st = steps[-1]
        log(f"[step {st['step']}] {st['verdict']}" + (f" ({st['why']})" if st["why"] else ""), flush=True)
        return st

    st = record("order 1, twin plane (normal first VE)",
                lambda: check_integrability(flow, curve="twin", order=1, **kw))
    if _conclusive(st["verdict"]):
        return steps, 0
    if st["report"] is not None:
        n_used = len(getattr(st["report"], "used_loops", []))
        st["why"] = (f"{n_used} verified loop(s); their monodromy group is abelian within error, "
                     "and the first VE says nothing more")
    st = record("order 2, unstable manifold of the twin-plane saddle (Koenigs plane)",
                lambda: saddle_unstable_check(flow, order=2, **kw))
    if st["report"] is not None and _conclusive(st["verdict"]):
        return steps, 1
    rep2 = st["report"]
    if rep2 is not None:
        excluded = [f"{lp.name}: {lp.note}" for lp in rep2.loops if not lp.verified and lp.note]
        if excluded:
            st["why"] = "; ".join([st["why"]] if st["why"] else []) + " (excluded loops: " \
                + "; ".join(excluded) + ")"
    if rep2 is not None and sum(lp.verified for lp in rep2.loops) >= 2:
        st = record("order 3, the same loops",
                    lambda: saddle_unstable_check(flow, order=3, **kw))
        if st["report"] is not None and _conclusive(st["verdict"]):
            return steps, 2
    elif rep2 is not None:
        steps.append(dict(step=3, what="order 3, the same loops", report=None, verdict="skipped",
                          why="step 2 had fewer than two verified loops: order 3 on the same loops "
                              "cannot say more (no commutator to integrate)"))
        log(f"[step 3] skipped ({steps[-1]['why']})")
    return steps, None


def _summary(steps, decided):
    L = ["", "ESCALATION SUMMARY"]
    for i, st in enumerate(steps):
        mark = "DECIDED" if decided == i else "silent "
        L.append(f"  step {st['step']} [{mark}] {st['what']}: {st['verdict']}")
        if st["why"]:
            L.append(f"      why: {st['why']}")
    if decided is None:
        L.append("VERDICT: no step decided (the test is one-sided: this is not evidence of "
                 "integrability)")
    else:
        st = steps[decided]
        L.append(f"VERDICT: {st['verdict']} (decided at step {st['step']}: {st['what']})")
    return "\n".join(L)


def _header(args, rc, flow):
    """The lines printed first: the flow, and for no CONFIG which example runs and why."""
    L = [f"narrowflow monodromy: {flow!r} ({rc.source})"]
    if args.config is None:
        L += [EXAMPLE_NOTE, NF4_PRESET_SILENT]
    return L


def _certify_order(verdict, step_order):
    """(order, note) for ``--certify``: the order at which the deciding verdict was reached
    (a JetVerdict's lowest non-abelian order; the step's order for a first-order verdict), or
    2 when nothing decided."""
    from narrowflow.monodromy.verify import JetVerdict
    if _conclusive(verdict):
        k = verdict.order if isinstance(verdict, JetVerdict) else step_order
        return k, "the order at which the verdict was reached"
    return 2, "no step decided; the order-2 certificate is tried on its own"


def run(args) -> int:
    from narrowflow.monodromy.network import check_integrability
    rc, opts = _split_config(args.config)
    flow = rc.flow()
    plain = args.curve is None and args.order is None and "curve" not in opts and "order" not in opts
    if plain and args.base is None and "base" not in opts:
        return _run_escalation(args, rc, opts, flow)
    curve = args.curve or opts.get("curve", "twin")
    order = args.order if args.order is not None else opts.get("order", 1)
    base = _parse_base(args.base) if args.base else (tuple(opts["base"]) if "base" in opts else None)
    if base is not None and len(base) != 2:
        raise ValueError(f"base must be [a0, w0], got {base!r}")
    if curve == "saddle-unstable" or order > 1:
        base = None     # the higher-order check picks its own base point on the saddle's curve
    kw = {}
    if args.rtol is not None or "rtol" in opts:
        kw["rtol"] = args.rtol if args.rtol is not None else opts["rtol"]
    if "parametrization" in opts:
        kw["parametrization"] = opts["parametrization"]
    head = _header(args, rc, flow)
    print("\n".join(head), flush=True)
    report = check_integrability(flow, curve=curve, order=order, base=base, **kw)
    text = str(report)
    print(text)
    out = Path(args.out or "narrowflow-monodromy")
    out.mkdir(parents=True, exist_ok=True)
    (out / "monodromy_report.txt").write_text("\n".join(head[1:] + [text]) + "\n")
    from narrowflow.monodromy.network import IntegrabilityReport
    if not args.no_figure:
        fig = out / "monodromy_loops.png"
        if isinstance(report, IntegrabilityReport):
            draw(report, fig)
        else:
            draw_saddle(report, fig, _decisive_pair(report))
        print(f"figure: {fig}")
    if args.certify:
        k, note = _certify_order(report.verdict, order)
        _certify(flow, out, k, note, decided=_conclusive(report.verdict))
    print(f"report: {out / 'monodromy_report.txt'}")
    sys.stdout.flush()
    return 0


def _run_escalation(args, rc, opts, flow) -> int:
    import time
    t0 = time.perf_counter()
    rtol = args.rtol if args.rtol is not None else opts.get("rtol")
    head = _header(args, rc, flow) + [
        "escalating: order 1 (twin plane) -> order 2 -> order 3 (unstable manifold of the "
        "saddle), stopping at the first conclusive step"]
    print("\n".join(head), flush=True)
    steps, decided = escalate(flow, rtol=rtol)
    body = []
    for st in steps:
        body.append(f"===== step {st['step']}: {st['what']} =====")
        body.append(str(st["report"]) if st["report"] is not None else f"{st['verdict']}: {st['why']}")
    body = "\n".join(body) + _summary(steps, decided) + f"\n  time: {time.perf_counter() - t0:.1f} s"
    print(body)
    text = "\n".join(head[1:] + [body])     # the report file: all but the flow's repr line
    out = Path(args.out or "narrowflow-monodromy")
    out.mkdir(parents=True, exist_ok=True)
    (out / "monodromy_report.txt").write_text(text + "\n")
    if not args.no_figure:
        from narrowflow.monodromy.network import IntegrabilityReport
        shown = steps[decided] if decided is not None else next(
            (st for st in reversed(steps) if st["report"] is not None), None)
        if shown is not None:
            fig = out / "monodromy_loops.png"
            rep = shown["report"]
            if isinstance(rep, IntegrabilityReport):
                draw(rep, fig)
            else:
                draw_saddle(rep, fig, _decisive_pair(rep))
            print(f"figure (step {shown['step']}): {fig}")
    if args.certify:
        if decided is not None:
            st = steps[decided]
            k, note = _certify_order(st["verdict"], 1 if st["step"] == 1 else st["report"].order)
            note = f"step {st['step']} decided; {note}"
        else:
            k, note = _certify_order(None, 2)
        _certify(flow, out, k, note, decided=decided is not None)
    print(f"report: {out / 'monodromy_report.txt'}")
    sys.stdout.flush()
    return 0


def _certify(flow, out, order=2, note="", decided=False) -> None:
    """--certify: the ball-arithmetic enclosure (narrowflow.monodromy.certify) at ``order``,
    or a line saying why it is not available for this flow."""
    try:
        from narrowflow.monodromy.certify import certify_integrability
    except ImportError as exc:                              # python-flint missing
        raise SystemExit(f"--certify needs python-flint (pip install 'narrowflow[certify]'): {exc}")
    print(f"certifying at order {order} ({note}) ...", flush=True)
    try:
        cert = certify_integrability(flow, order=order)
    except ValueError as exc:
        text = f"CERTIFICATION: not available for this flow at order {order} ({note}): {exc}"
        if decided:
            text += ". The float verdict above stands with its error bars; it is not certified."
    else:
        text = f"CERTIFICATION at order {order} ({note}):\n{cert}"
    print(text, flush=True)
    (out / "certificate.txt").write_text(text + "\n")
    print(f"certificate: {out / 'certificate.txt'}")
