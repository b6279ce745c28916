"""Helpers of .ci/gpu_check.sh: pick the carried wheels a machine lacks, and write the one report.

    python .ci/gpu_check.py select WHEEL_DIR          print the wheels to install (one path a line)
    python .ci/gpu_check.py report WORK_DIR REPORT    write the markdown report from WORK_DIR's results

Standard library only, except `packaging` (a dependency of transformers, so present wherever the check runs).
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

WHEEL_RE = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<tags>[^-]+-[^-]+-[^-]+)\.whl$")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def select(wheel_dir: Path) -> list[Path]:
    """The carried wheels to install: one per distribution that is not installed, the build that best fits this
    interpreter (the folder may hold builds for several Python versions). Installed distributions are kept,
    whatever their version: the machine's own builds (torch's stack) must not be shadowed."""
    from packaging.tags import parse_tag, sys_tags

    rank = {tag: i for i, tag in enumerate(sys_tags())}
    best: dict[str, tuple[int, Path]] = {}
    kept, foreign = [], []
    for path in sorted(wheel_dir.glob("*.whl")):
        m = WHEEL_RE.match(path.name)
        if not m:
            continue
        name = _normal(m["name"])
        fit = min((rank[t] for t in parse_tag(m["tags"]) if t in rank), default=None)
        if fit is None:
            foreign.append(path.name)
            continue
        try:
            kept.append(f"{name} {metadata.version(name)} (installed; carried {m['version']})")
            continue
        except metadata.PackageNotFoundError:
            pass
        if name not in best or fit < best[name][0]:
            best[name] = (fit, path)
    for line in kept:
        print(f"[gpu-check] keeping {line}", file=sys.stderr)
    if foreign:
        print(f"[gpu-check] {len(foreign)} carried wheel(s) built for another Python: skipped", file=sys.stderr)
    return [p for _, p in sorted(best.values(), key=lambda fp: fp[1].name)]


def unmet_requirements(names: list[str]) -> list[str]:
    """Requirements of `names` (and of the homework project) that the environment does not meet."""
    from packaging.requirements import Requirement

    problems, seen, todo = [], set(), list(names)
    while todo:
        name = _normal(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}: not installed")
            continue
        for text in dist.requires or []:
            req = Requirement(text)
            # the project's test extra counts; no other distribution's extras do
            if req.marker is not None and not req.marker.evaluate({"extra": "test" if name == "homework" else ""}):
                continue
            try:
                have = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                problems.append(f"{req} (needed by {name}): not installed")
                continue
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                problems.append(f"{req} (needed by {name}): {have} installed")
            todo.append(req.name)
    return sorted(set(problems))


# --------------------------------------------------------------------------- the report


def environment() -> dict:
    env = {"python": platform.python_version(), "machine": platform.machine()}
    for dist in ("torch", "transformers", "peft", "accelerate", "pytest", "homework"):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist] = "not installed"
    try:
        import torch

        env["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            env["device"] = torch.cuda.get_device_name(0)
            env["device_count"] = torch.cuda.device_count()
            env["cuda"] = torch.version.cuda
            env["bf16_supported"] = torch.cuda.is_bf16_supported()
        else:
            env["device"] = f"CPU ({torch.get_num_threads()} threads)"
    except Exception as exc:  # the report must still be written
        env["device"] = f"unknown ({type(exc).__name__}: {exc})"
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if smi.returncode == 0 and smi.stdout.strip():
            env["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return env


def _test_id(case: ET.Element) -> str:
    classname, name = case.get("classname", ""), case.get("name", "")
    parts = classname.split(".")
    # tests.test_x.TestClass -> tests/test_x.py::TestClass
    for i in range(len(parts), 0, -1):
        if parts[i - 1].startswith("test_") or parts[i - 1] == "conftest":
            return "/".join(parts[:i]) + ".py::" + "::".join([*parts[i:], name])
    return f"{classname}::{name}" if classname else name


def _last_line(node: ET.Element) -> str:
    """The failure's last line (where it was raised: "tests/x.py:12: AssertionError") and, when it says more,
    the first line of its message (pytest's short summary)."""
    lines = [ln.strip() for ln in (node.text or "").splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    message = next((ln.strip() for ln in (node.get("message") or "").splitlines() if ln.strip()), "")
    if len(message) > 200:
        message = message[:200] + " ..."
    if message and message not in last:
        return f"{last} -- {message}" if last else message
    return last


def junit_summary(path: Path) -> dict:
    """Counts, failures (test id and last line) and recorded properties of one pytest run."""
    out = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": [], "properties": []}
    if not path.is_file():
        return out
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        tid = _test_id(case)
        failed = case.find("failure")
        errored = case.find("error")
        if failed is not None:
            out["failed"] += 1
            out["failures"].append({"id": tid, "kind": "failed", "last_line": _last_line(failed)})
        elif errored is not None:
            out["errors"] += 1
            out["failures"].append({"id": tid, "kind": "error", "last_line": _last_line(errored)})
        elif case.find("skipped") is not None:
            out["skipped"] += 1
        else:
            out["passed"] += 1
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if props:
            out["properties"].append({"id": tid, **props})
    return out


def _stage_rows(work: Path) -> list[dict]:
    rows = []
    for meta in sorted(work.glob("stage-*.json")):
        stage = json.loads(meta.read_text())
        tail = work / (stage.get("tail_file") or "-")
        stage["tail"] = tail.read_text().rstrip() if tail.is_file() else ""
        if stage.get("junit"):
            stage.update(junit_summary(work / stage["junit"]))
        rows.append(stage)
    return rows


def _bench_section(path: Path) -> list[str]:
    if not path.is_file():
        return ["No benchmark figures (the benchmark did not finish; see its stage above)."]
    data = json.loads(path.read_text())
    env = data.get("environment", {})
    lines = [f"Batch {env.get('batch_size')}, device {env.get('device')}; compare ratios measured in this run.", "",
             "| variant | s/step | real tokens/s | peak RSS MB | steps | first loss |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in data.get("results", {}).items():
        first = r.get("losses", [None])[0]
        lines.append(f"| {name} | {r['seconds_per_step']:.3f} | {r['real_tokens_per_s']:.0f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['steps']} | {first:.4f} |" if first is not None else f"| {name} | | | | | |")
    ratios = {k: v for k, v in data.items() if k.endswith(("_gain", "speedup"))}
    if ratios:
        lines += ["", "| ratio | value |", "| --- | ---: |"]
        lines += [f"| {k} | {v:.2f}x |" for k, v in ratios.items()]
    return lines


def report(work: Path, target: Path) -> None:
    env = json.loads((work / "environment.json").read_text()) if (work / "environment.json").is_file() else environment()
    lines = ["# GPU check", "", f"Written by .ci/gpu_check.sh ({(work / 'mode').read_text().strip() if (work / 'mode').is_file() else 'full'} run)."]
    lines += ["", "## Environment", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    install = work / "install.txt"
    if install.is_file():
        lines += ["", "## Installed from carried wheels", "", "```", install.read_text().strip() or "(nothing: all present)", "```"]
    lines += ["", "## Stages", "", "| stage | exit | seconds | passed | failed | errors | skipped | note |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    stages = _stage_rows(work)
    for s in stages:
        note = "TIMED OUT (cut by the call's budget)" if s.get("timed_out") else ""
        counts = ([str(s.get(k, "")) for k in ("passed", "failed", "errors", "skipped")] if s.get("junit")
                  else ["", "", "", ""])
        lines.append(f"| {s['name']} | {s['rc']} | {s['seconds']} | {' | '.join(counts)} | {note} |")
    failures = [(s["name"], f) for s in stages for f in s.get("failures", [])]
    lines += ["", "## Failures", ""]
    if failures:
        lines += [f"- [{stage}] `{f['id']}` ({f['kind']}): {f['last_line']}" for stage, f in failures]
    else:
        lines.append("None.")
    for s in stages:  # a stage that failed with no test to blame (the command itself broke, or timed out)
        if s["rc"] not in (0, None) and s.get("tail") and (not s.get("junit") or s.get("timed_out")
                                                              or not (s.get("failed") or s.get("errors"))):
            lines += ["", f"Last output of {s['name']}:", "", "```", s["tail"], "```"]
    props = [(s["name"], p) for s in stages for p in s.get("properties", [])]
    if props:
        lines += ["", "## Measured by the tests (recorded properties)", ""]
        for stage, p in props:
            rest = ", ".join(f"{k}={v}" for k, v in p.items() if k != "id")
            lines.append(f"- [{stage}] `{p['id']}`: {rest}")
    lines += ["", "## Benchmark", ""] + _bench_section(work / "bench.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    if argv[:1] == ["select"] and len(argv) == 2:
        for path in select(Path(argv[1])):
            print(path)
        return 0
    if argv[:1] == ["unmet"]:
        for line in unmet_requirements(argv[1:]):
            print(line)
        return 0
    if argv[:1] == ["environment"] and len(argv) == 2:
        Path(argv[1]).write_text(json.dumps(environment(), indent=1))
        return 0
    if argv[:1] == ["report"] and len(argv) == 3:
        report(Path(argv[1]), Path(argv[2]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
