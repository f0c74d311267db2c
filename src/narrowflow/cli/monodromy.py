"""`narrowflow monodromy [CONFIG] [--order K] [--out DIR]`: the integrability test.

Builds the gradient flow from CONFIG (the keys of ``narrowflow run``; default: the NF4
preset), runs ``narrowflow.monodromy.check_integrability`` on the chosen integral curve,
prints the report (curve, loops, verification figures, classification, verdict) and draws
the loops, the singular points and the base point in the complex parameter plane (PNG).

An optional ``[monodromy]`` table in CONFIG sets the defaults of the options below:
``curve`` ("twin", "dead-neuron", "saddle-unstable"), ``order``, ``base`` ([a0, w0]),
``parametrization`` ("w"), ``rtol``.
"""
from __future__ import annotations

import sys
from pathlib import Path

def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "monodromy", help="test integrability: monodromy of the variational equation",
        description="Monodromy of the (normal) variational equation along loops of an integral "
                    "curve in the complex domain, verified loop by loop, and what it says about "
                    "the Galois group (MATH.md section 5).")
    p.add_argument("config", nargs="?", default=None, metavar="CONFIG",
                   help="TOML config (network and data as for `narrowflow run`, optional "
                        "[monodromy] table); default: the NF4 preset")
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
    p.set_defaults(func=run)


def _split_config(path):
    """(RunConfig, monodromy options) from a TOML file (None: the NF4 preset).

    The [monodromy] table is validated with the rest by narrowflow.config; its keys
    left unset (None) are not passed on.
    """
    from narrowflow import config
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


def run(args) -> int:
    from narrowflow.monodromy.network import check_integrability
    rc, opts = _split_config(args.config)
    flow = rc.flow()
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
    print(f"narrowflow monodromy: {flow!r} ({rc.source})", flush=True)
    report = check_integrability(flow, curve=curve, order=order, base=base, **kw)
    text = str(report)
    print(text)
    out = Path(args.out or "narrowflow-monodromy")
    out.mkdir(parents=True, exist_ok=True)
    (out / "monodromy_report.txt").write_text(text + "\n")
    from narrowflow.monodromy.network import IntegrabilityReport
    if not args.no_figure and isinstance(report, IntegrabilityReport):
        fig = out / "monodromy_loops.png"
        draw(report, fig)
        print(f"figure: {fig}")
    print(f"report: {out / 'monodromy_report.txt'}")
    sys.stdout.flush()
    return 0
