"""What a person opens: report.html in a real browser with no network, and report.md on one A4
page. Both need Debian's chromium (and pandoc and pdfinfo for the page count); where they are
missing the tests skip and say what to install."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import analyze_command
from test_analysis import write_experiment

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs a real browser: apt-get install -y chromium"
)


def browser(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    """Headless Chromium as a test harness runs it: no sandbox (root), no GPU, and no network
    at all (every host resolves to nothing, every connection goes to a closed port)."""
    assert CHROMIUM is not None
    offline = [
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=127.0.0.1:9",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
    ]
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-unsafe-swiftshader",
        f"--user-data-dir={profile}",
        *offline,
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@needs_chromium
def test_the_report_page_works_offline_with_one_line_per_trial(tmp_path: Path) -> None:
    trials = [
        ({"lr": lr, "dropout": d, "batch_size": bs}, [0.4, 0.5 + lr * 10] + [0.6] * (bs // 16))
        for lr in (1e-3, 3e-3, 1e-2)
        for d in (0.1, 0.4)
        for bs in (16, 32)
    ]
    folder = write_experiment(tmp_path / "exp", "search", trials, max_epochs=4)
    assert analyze_command([str(folder)]) == 0
    page = folder / "figures" / "report.html"
    assert (folder / "figures" / "plotly.min.js").is_file()
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', page.read_text())  # nothing remote
    dom = browser(
        "--virtual-time-budget=10000", "--dump-dom", page.as_uri(), profile=tmp_path / "profile"
    ).stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None and 'data-rendered="' in body.group(0), "the plots never rendered"
    assert 'data-errors=""' in body.group(0), body.group(0)  # no script error, no failed plot
    lines = re.search(r'id="plot-0"[^>]*data-lines="(\d+)"', dom)
    assert lines is not None and int(lines.group(1)) == len(trials)  # one line per trial


@needs_chromium
@pytest.mark.skipif(
    shutil.which("pandoc") is None or shutil.which("pdfinfo") is None,
    reason="needs pandoc and pdfinfo: apt-get install -y pandoc poppler-utils",
)
def test_report_md_fits_one_a4_page(tmp_path: Path) -> None:
    text = (ROOT / "report.md").read_text()
    words = len(re.sub(r"!\[[^]]*\]\([^)]*\)", "", text).split())
    assert words <= 450, f"report.md has {words} words: one page holds about 450"
    css = tmp_path / "page.css"
    css.write_text(
        "@page { size: A4; margin: 2cm; } body { font: 10pt/1.3 sans-serif; }"
        " img { max-width: 100%; }"
    )
    html = tmp_path / "report.html"
    subprocess.run(
        [
            "pandoc",
            str(ROOT / "report.md"),
            "--self-contained",
            "--css",
            str(css),
            "--resource-path",
            str(ROOT),
            "--metadata",
            "pagetitle=report",
            "-o",
            str(html),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pdf = tmp_path / "report.pdf"
    browser(
        f"--print-to-pdf={pdf}",
        "--no-pdf-header-footer",
        html.as_uri(),
        profile=tmp_path / "profile",
    )
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
    pages = re.search(r"Pages:\s+(\d+)", info.stdout)
    assert pages is not None and int(pages.group(1)) == 1, info.stdout
