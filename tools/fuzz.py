"""Long fuzz run of narrowflow (issue 11, part 9): thousands of generated cases, isolated in
worker processes so that crashes (a signal, a lost worker) and hangs (no answer within a
timeout) are counted rather than fatal.

    python tools/fuzz.py                         # defaults: 2000 API, 2000 config, 40 CLI cases
    python tools/fuzz.py --api 500 --config 0 --cli 0 --timeout 60 --jobs 2

Categories (the generators are those of tests/test_fuzz.py):

    API fuzz      solve_ensemble with generated arguments and initial states
    config fuzz   narrowflow.config.validate of generated TOML documents, then building the
                  run they describe (network, data, save grid, solver settings, initial states)
    CLI fuzz      `narrowflow run CONFIG --out DIR -n 4 --threads 1 --no-figure` in a fresh
                  process, on a generated config: exit 0 with a result, or exit 2 with one
                  line naming a config key, never a traceback

Each case is good (accepted and checked, or refused by a ValueError/TypeError naming the
argument or key), bad (another exception type, a refusal naming nothing, a non-finite
value under SUCCESS/CONVERGED, a valid-looking config that then fails), crash (the worker
died) or hang (no answer within --timeout seconds). Prints the table and the first bad
cases; exits 1 if any case was not good.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fuzz_module():
    """tests/test_fuzz.py, imported by path (its generators and checks)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("nf_test_fuzz", ROOT / "tests" / "test_fuzz.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _emit(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def worker(kind: str, seed: int, count: int) -> None:
    """Run `count` cases of `kind` from `seed`, one JSON line before ('start') and after
    ('done', with the outcome) each case, on stdout."""
    import warnings
    warnings.simplefilter("ignore")
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st
    fz = _fuzz_module()
    from narrowflow import model
    flow = model.nf4_benchmark() if kind == "api" else None
    counter = {"i": 0}

    def one(run, describe):
        i = counter["i"]
        counter["i"] += 1
        _emit({"event": "start", "i": i, "case": describe()[:300]})
        try:
            outcome, detail = run(), ""
        except AssertionError as exc:
            outcome, detail = "bad", str(exc)
        except Exception as exc:  # noqa: BLE001 - any other type is a contract breach
            outcome, detail = "bad", f"{type(exc).__name__}: {exc}"
        _emit({"event": "done", "i": i, "outcome": outcome, "detail": detail[:400]})

    opts = settings(max_examples=count, deadline=None, database=None, derandomize=False,
                    phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    if kind == "api":
        @hseed(seed)
        @opts
        @given(data=st.data())
        def run_api(data):
            theta0, kwargs = data.draw(fz.api_case(flow.n_params, max_steps=20000))
            one(lambda: fz.check_api_case(flow, theta0, kwargs),
                lambda: f"theta0 {getattr(theta0, 'shape', type(theta0).__name__)}, {kwargs!r}")
        run_api()
    elif kind == "config":
        @hseed(seed)
        @opts
        @given(doc=fz.config_docs())
        def run_config(doc):
            one(lambda: fz.check_config_case(doc), lambda: repr(doc))
        run_config()
    else:
        raise SystemExit(f"unknown worker kind {kind!r}")
    _emit({"event": "end"})


def _run_batches(kind: str, total: int, timeout: float, seed0: int, log) -> dict:
    """Run `total` cases of kind in workers; restart a worker after a crash or a hang."""
    counts = {"tried": 0, "good": 0, "bad": 0, "crash": 0, "hang": 0, "refused": 0}
    examples = []
    seed = seed0
    while counts["tried"] < total:
        want = min(500, total - counts["tried"])
        proc = subprocess.Popen([sys.executable, __file__, "--worker", kind, "--seed",
                                 str(seed), "--count", str(want)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                cwd=ROOT)
        seed += 1
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        current, got_any = None, False
        deadline = time.monotonic() + timeout + 120     # the first case includes start-up
        while True:
            ready = sel.select(timeout=max(0.0, deadline - time.monotonic()))
            if not ready:            # no answer in time: a hang
                proc.kill()
                proc.wait()
                if current is not None:
                    counts["tried"] += 1
                    counts["hang"] += 1
                    examples.append(("hang", current))
                break
            line = proc.stdout.readline()
            if not line:             # the worker died
                rc = proc.wait()
                if current is not None:
                    counts["tried"] += 1
                    counts["crash"] += 1
                    examples.append(("crash", f"exit {rc}: {current}"))
                elif not got_any:
                    raise SystemExit(f"fuzz worker {kind} failed to start (exit {rc})")
                break
            ev = json.loads(line)
            got_any = True
            if ev["event"] == "start":
                current = ev["case"]
                deadline = time.monotonic() + timeout
            elif ev["event"] == "done":
                counts["tried"] += 1
                o = ev["outcome"]
                counts["good" if o in ("good", "refused") else "bad"] += 1
                counts["refused"] += o == "refused"
                if o == "bad":
                    examples.append(("bad", f"{ev['detail']} <- {current}"))
                current = None
                if counts["tried"] >= total:
                    proc.kill()
                    proc.wait()
                    break
            elif ev["event"] == "end":
                proc.wait()
                break
        log(f"  {kind}: {counts}")
    counts["examples"] = examples
    return counts


def _cli_cases(total: int, timeout: float, seed: int, log) -> dict:
    """`narrowflow run` on generated configs, one fresh process per case."""
    import random
    import tomllib  # noqa: F401 - the generated documents must be valid TOML
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    fz = _fuzz_module()
    docs = []

    @hseed(seed)
    @settings(max_examples=total, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(doc=fz.config_docs())
    def collect(doc):
        docs.append(doc)
    collect()
    random.Random(seed).shuffle(docs)
    counts = {"tried": 0, "good": 0, "bad": 0, "crash": 0, "hang": 0, "refused": 0,
              "examples": []}
    for doc in docs[:total]:
        text = _toml(doc)
        if text is None:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "c.toml"
            cfg.write_text(text)
            counts["tried"] += 1
            try:
                r = subprocess.run([sys.executable, "-c", "import sys; from narrowflow.cli "
                                    "import main; sys.exit(main())", "run", str(cfg),
                                    "--out", str(Path(tmp) / "o"), "-n", "4", "--threads", "1",
                                    "--no-figure"], capture_output=True, text=True,
                                   timeout=timeout, cwd=tmp)
            except subprocess.TimeoutExpired:
                counts["hang"] += 1
                counts["examples"].append(("hang", text))
                continue
            err = r.stderr.strip()
            if r.returncode < 0:
                counts["crash"] += 1
                counts["examples"].append(("crash", f"signal {-r.returncode}: {text}"))
            elif r.returncode == 0 and (Path(tmp) / "o").exists():
                counts["good"] += 1
            elif (r.returncode == 2 and "Traceback" not in err
                  and len(err.splitlines()) == 1 and fz._names_a_key(err, doc)):
                counts["good"] += 1
                counts["refused"] += 1
            else:
                counts["bad"] += 1
                counts["examples"].append(("bad", f"exit {r.returncode}: {err[-300:]} <- {text!r}"))
    log(f"  cli: {counts['tried']} tried")
    return counts


def _toml(doc) -> str | None:
    """The document as TOML text (None if it has no TOML form, e.g. a bare value)."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if v != v else ("inf" if v == float("inf") else
                                          "-inf" if v == float("-inf") else repr(v))
        if isinstance(v, int):
            return str(v) if -(2**63) <= v < 2**63 else None
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            items = [val(x) for x in v]
            return None if None in items else "[" + ", ".join(items) + "]"
        if isinstance(v, dict):
            items = [(k, val(x)) for k, x in v.items()]
            return None if any(x is None for _, x in items) else \
                "{" + ", ".join(f"{k} = {x}" for k, x in items) + "}"
        return None
    lines = []
    for k, v in doc.items():
        if not isinstance(v, dict):
            s = val(v)
            if s is None:
                return None
            lines.insert(0, f"{k} = {s}")
    for table, body in doc.items():
        if isinstance(body, dict):
            lines.append(f"[{table}]")
            for k, v in body.items():
                s = val(v)
                if s is None:
                    return None
                lines.append(f"{k} = {s}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--api", type=int, default=2000, help="API cases")
    ap.add_argument("--config", type=int, default=2000, help="config cases")
    ap.add_argument("--cli", type=int, default=40, help="CLI cases (a process each)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case (hang)")
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="categories run side by side")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.seed, args.count)
        return 0
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    start = time.perf_counter()
    from concurrent.futures import ThreadPoolExecutor
    jobs = {}
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        if args.api:
            jobs["API fuzz"] = pool.submit(_run_batches, "api", args.api, args.timeout,
                                           args.seed, log)
        if args.config:
            jobs["config fuzz"] = pool.submit(_run_batches, "config", args.config,
                                              args.timeout, args.seed + 1000, log)
        if args.cli:
            jobs["CLI fuzz"] = pool.submit(_cli_cases, args.cli, args.timeout,
                                           args.seed + 2000, log)
        results = {k: f.result() for k, f in jobs.items()}
    print("| category | tried | good | bad | crash | hang |")
    print("|---|---|---|---|---|---|")
    for k, c in results.items():
        print(f"| {k} | {c['tried']:,} | {c['good']:,} | {c['bad']:,} | {c['crash']:,} | "
              f"{c['hang']:,} |")
    print("\ngood = accepted and checked, or refused naming the argument/key; refused: " +
          ", ".join(f"{k} {c['refused']:,}" for k, c in results.items()))
    print(f"{time.perf_counter() - start:.0f} s, seed {args.seed}, timeout {args.timeout:g} s "
          f"per case")
    failed = False
    for k, c in results.items():
        for what, text in c["examples"][:5]:
            failed = True
            print(f"\n{k} {what}: {text}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
