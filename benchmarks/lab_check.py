"""Open executed notebooks in JupyterLab, in headless Chromium, as a reader would, and check what they show.

Starts JupyterLab from the project env on a free loopback port, opens each notebook given (default: one training
notebook and the report of a profile) in Debian's ``/usr/bin/chromium`` driven by Playwright, waits for the
notebook to render, and asserts: images are present in the outputs, no cell shows an error, no output shows a
progress-bar fragment or a warning. A full-page screenshot of each goes to ``--out`` (default
``results/benchmarks/``), with ``lab_check.json`` and ``lab_check.md`` recording what was seen.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/lab_check.py                      # results/default
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/lab_check.py --profile smoke --out /tmp/lab

Needs ``apt-get install chromium`` and ``pip install playwright`` (both pinned by ``./run_all.sh --setup`` /
``.ci/run``); Playwright's own browser download is never used.
"""
from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reidlib.io import write_atomic, write_json  # noqa: E402

CHROMIUM = os.environ.get("REIDLIB_CHROMIUM", "/usr/bin/chromium")
# what the machine's closed network needs: no background connections, no sandbox as root
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(port: int, token: str, log: Path) -> subprocess.Popen:
    """JupyterLab serving the checkout on 127.0.0.1:``port``; returns once it answers (or raises)."""
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={REPO}", "--ServerApp.open_browser=False",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--allow-root"]
    config = log.parent / "jupyter-config"
    # no "official Jupyter news?" prompt over the page (and no request for it on a closed network)
    write_json(config / "labconfig" / "page_config.json",
               {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config)}
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"jupyter lab did not answer on port {port} within 120 s; see {log}")


def inspect_notebook(page, url: str, shot: Path, timeout_s: float = 120) -> dict:
    """Open ``url`` (a notebook in JupyterLab), wait for its outputs, screenshot it and count what it shows."""
    page.goto(url, wait_until="domcontentloaded", timeout=timeout_s * 1000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout_s * 1000)
    page.wait_for_timeout(1500)
    # JupyterLab renders cells lazily as they scroll into view: walk the notebook to the end once
    panel = ".jp-WindowedPanel-outer, .jp-NotebookPanel-notebook"
    for _ in range(60):
        done = page.evaluate(f"""() => {{
            const el = document.querySelector('{panel}');
            if (!el) return true;
            const before = el.scrollTop; el.scrollTop = before + el.clientHeight;
            return el.scrollTop === before; }}""")
        page.wait_for_timeout(250)
        if done:
            break
    images = page.eval_on_selector_all(".jp-OutputArea-output img",
                                       "els => els.filter(e => e.complete && e.naturalWidth > 0).length")
    errors = page.eval_on_selector_all(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                                       "els => els.map(e => e.innerText.slice(0, 300))")
    tracebacks = page.eval_on_selector_all(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr'], "
                                           ".jp-OutputArea-output .jp-RenderedText",
                                           "els => els.map(e => e.innerText).filter(t => /Traceback|Error:/.test(t))"
                                           ".map(t => t.slice(0, 300))")
    texts = page.eval_on_selector_all(".jp-OutputArea-output", "els => els.map(e => e.innerText)")
    markdown_sel = ".jp-OutputArea-output.jp-RenderedMarkdown, .jp-OutputArea-output .jp-RenderedMarkdown"
    markdown = page.eval_on_selector_all(markdown_sel, "els => els.length")
    # the screenshot shows the notebook's first rendered output worth seeing: rendered markdown, else a figure
    target = ".jp-OutputArea-output:has-text('Table I: rank-1')" if markdown else ".jp-OutputArea-output img"
    page.evaluate(f"() => {{ const el = document.querySelector('{panel}'); if (el) el.scrollTop = 0; }}")
    page.wait_for_timeout(300)
    for _ in range(60):  # scroll down until the target is rendered, then bring it to the top of the view
        found = page.query_selector(target)
        if found is not None:
            found.evaluate("e => e.scrollIntoView({block: 'start'})")
            break
        page.evaluate(f"() => {{ const el = document.querySelector('{panel}'); "
                      "if (el) el.scrollTop += el.clientHeight; }")
        page.wait_for_timeout(250)
    page.wait_for_timeout(800)
    page.screenshot(path=str(shot), full_page=False)
    noisy = [t[:200] for t in texts if "Warning" in t or "it/s]" in t or "IProgress" in t]
    return {"url": url.split("?")[0], "screenshot": str(shot.relative_to(REPO)) if shot.is_relative_to(REPO)
            else str(shot), "images": images, "rendered_markdown_outputs": markdown,
            "stderr_outputs": errors, "tracebacks": tracebacks, "noisy_outputs": noisy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default", help="results/<profile> to open")
    parser.add_argument("--notebook", action="append", default=None,
                        help="notebook path relative to the repo (repeatable); "
                             "default: a training notebook and the report")
    parser.add_argument("--out", default=str(REPO / "results" / "benchmarks"), help="folder for screenshots and report")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1600)
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    root = REPO / "results" / args.profile
    notebooks = args.notebook or [
        str(next(iter(sorted((root / "10_train").glob("*/10_train.ipynb")))).relative_to(REPO)),
        str((root / "report" / "40_report.ipynb").relative_to(REPO)),
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"reidlib-lab-check-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(16)
    lab = start_lab(port, token, scratch / "lab.log")
    results = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            for i, nb in enumerate(notebooks):
                url = f"http://127.0.0.1:{port}/lab/tree/{nb}?token={token}"
                shot = out / f"lab_check_{args.profile}_{i}_{Path(nb).stem}.png"
                results.append({"notebook": nb, **inspect_notebook(page, url, shot)})
            browser.close()
    finally:
        lab.terminate()
        try:
            lab.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lab.kill()
    ok = all(r["images"] > 0 and not r["stderr_outputs"] and not r["tracebacks"] and not r["noisy_outputs"]
             for r in results)
    report_nb = [r for r in results if r["notebook"].endswith("40_report.ipynb")]
    ok = ok and all(r["rendered_markdown_outputs"] > 0 for r in report_nb)
    summary = {"ok": ok, "profile": args.profile, "browser": CHROMIUM, "notebooks": results,
               "command": "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/lab_check.py --profile " + args.profile}
    write_json(out / f"lab_check_{args.profile}.json", summary)
    lines = [f"# JupyterLab check of results/{args.profile}", "",
             f"`{summary['command']}`: JupyterLab from the project env, headless Chromium ({CHROMIUM}).", "",
             "| notebook | images shown | rendered markdown outputs | error outputs | noisy outputs | screenshot |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| `{r['notebook']}` | {r['images']} | {r['rendered_markdown_outputs']} | "
                     f"{len(r['stderr_outputs']) + len(r['tracebacks'])} | {len(r['noisy_outputs'])} | "
                     f"![]({Path(r['screenshot']).name}) |")
    lines += ["", "Result: " + ("**pass**" if ok else "**FAIL**"), ""]
    write_atomic(out / f"lab_check_{args.profile}.md", "\n".join(lines))
    for r in results:
        print(f"{r['notebook']}: {r['images']} images, {r['rendered_markdown_outputs']} markdown outputs, "
              f"{len(r['stderr_outputs']) + len(r['tracebacks'])} errors, {len(r['noisy_outputs'])} noisy")
    print("lab check:", "pass" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
