"""Reports: every format produced and parsable, figures valid images of the expected size,
group-by, provenance, failure handling; the HTML page in headless Chromium."""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from records_factory import record, write_jsonl, zoo

from tpme.errors import TpmeError
from tpme.metrics.tpme import Weights
from tpme.reports.build import FORMATS, parse_formats, write_report
from tpme.results.load import apply_group_by, get_field, load_inputs
from tpme.reports.plots import pareto_front
from tpme.reports.summary import memory_breakdown, summarise
from tpme.reports.table import render_latex, render_markdown, render_terminal

PAPER = Weights.parse("paper")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    result = write_report(zoo(), out, PAPER, FORMATS, inputs=["zoo"])
    assert result.warnings == []
    return out


def test_every_format_is_written(full_report: Path) -> None:
    for name in ("report.html", "report.md", "table.tex", "table.csv", "report.json"):
        assert (full_report / name).is_file(), name
    figures = {p.stem for p in full_report.glob("*.png")}
    assert figures == {"efficiency", "time_memory", "effectiveness", "step_times", "step_breakdown", "memory_breakdown", "sensitivity"}
    assert figures == {p.stem for p in full_report.glob("*.svg")} == {p.stem for p in full_report.glob("*.pdf")}
    for pdf in full_report.glob("*.pdf"):
        assert pdf.read_bytes()[:5] == b"%PDF-", pdf


def test_csv_loads_with_raw_numbers_and_weights(full_report: Path) -> None:
    rows = list(csv.DictReader(io.StringIO((full_report / "table.csv").read_text())))
    assert [r["label"] for r in rows] == ["iisan-cached", "frozen", "iisan", "adapter", "lora", "fft", "bitfit"]
    by = {r["label"]: r for r in rows}
    assert float(by["fft"]["trainable_params"]) == 428_416
    assert float(by["fft"]["trainable_params_pct_of_max"]) == 100.0
    assert float(by["fft"]["tpme"]) == pytest.approx(1.0)
    assert by["iisan-cached"]["rank"] == "1"
    assert (by["fft"]["weight_time"], by["fft"]["weight_params"], by["fft"]["weight_memory"]) == ("0.45", "0.1", "0.45")
    assert by["bitfit"]["status"] == "oom" and "OutOfMemoryError" in by["bitfit"]["error"] and by["bitfit"]["tpme"] == ""
    assert float(by["lora"]["hr@10"]) == pytest.approx(0.059)


def test_json_loads(full_report: Path) -> None:
    data = json.loads((full_report / "report.json").read_text())
    assert data["weights"] == [0.45, 0.1, 0.45]
    assert len(data["rows"]) == 7
    assert sum(data["sensitivity"]["shares"].values()) == pytest.approx(1.0)
    assert data["provenance"]["devices"] == ["CPU (x86_64, 2 threads)"]
    assert data["provenance"]["failures"][0]["label"] == "bitfit"


def test_latex_has_expected_rows_and_columns(full_report: Path) -> None:
    tex = (full_report / "table.tex").read_text()
    assert r"\begin{tabular}{lrrrrrrrr}" in tex  # method + 6 figures + HR@10 + NDCG@10
    for cmd in (r"\toprule", r"\midrule", r"\bottomrule", r"\caption{", r"\label{tab:tpme-efficiency}"):
        assert cmd in tex
    head, body = tex.split(r"\midrule")[0], tex.split(r"\midrule")[1].split(r"\bottomrule")[0]
    header = head.strip().splitlines()[-1]
    assert header.startswith("Method &") and "HR@10" in header and "NDCG@10" in header and r"\%" in header
    lines = [l for l in body.strip().splitlines() if l.strip()]
    assert len(lines) == 7
    for line in lines:
        assert line.endswith(r"\\")
        assert len(re.split(r"(?<!\\)&", line)) == 9
    assert lines[0].startswith("iisan-cached &") and "$^{*}$" in lines[0]
    assert lines[-1].startswith("bitfit & --")
    assert "0.45$\\cdot$t" in tex  # the weights are stated


def test_latex_escapes_special_characters() -> None:
    recs = [record("my_method", 1.0, 100, 2**20, options={"k": "50%"}), record("fft", 2.0, 200, 2**21)]
    tex = render_latex(summarise(recs, PAPER))
    assert r"my\_method(k=50\%)" in tex


def test_pngs_are_valid_images_of_the_expected_size(full_report: Path) -> None:
    from PIL import Image

    expected_width = {"efficiency": 7.2, "time_memory": 7.2 * 0.7, "effectiveness": 7.2, "step_times": 7.2 * 0.7, "step_breakdown": 7.2, "memory_breakdown": 7.2, "sensitivity": 7.2 * 0.75}
    for name, width_in in expected_width.items():
        path = full_report / f"{name}.png"
        w, h = png_size(path)
        assert w == round(width_in * 200), name
        with Image.open(path) as im:
            im.verify()
    # six ranked rows: 1.0 + 0.28 * 6 + 0.5 inches at 200 dpi
    assert png_size(full_report / "efficiency.png")[1] == round((1.0 + 0.28 * 6 + 0.5) * 200)


def test_svgs_are_valid_xml_of_the_expected_size(full_report: Path) -> None:
    root = ET.parse(full_report / "efficiency.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert float(root.attrib["width"].removesuffix("pt")) == pytest.approx(7.2 * 72)
    assert float(root.attrib["height"].removesuffix("pt")) == pytest.approx((1.0 + 0.28 * 6 + 0.5) * 72)
    for svg in full_report.glob("*.svg"):
        assert ET.parse(svg).getroot().tag.endswith("svg")


def test_markdown_report_links_figures_and_states_provenance(full_report: Path) -> None:
    md = (full_report / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+\.png)\)", md)
    assert links
    for link in links:
        assert (full_report / link).is_file()
    assert "a1 (time) = 0.45" in md and "## Weight sensitivity" in md and "## Provenance" in md
    assert "bitfit (repeat 0): oom: torch.OutOfMemoryError" in md
    assert "**git commit**: abc123" in md and "tpme run --preset ci" in md


def test_html_is_self_contained(full_report: Path) -> None:
    page = (full_report / "report.html").read_text()
    assert 'http-equiv="Content-Security-Policy" content="default-src \'none\'' in page
    srcs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert page.count("<img ") == 7
    assert "<link" not in page
    for text in ("CPU (x86_64, 2 threads)", "tpme run --preset ci", "abc123", "torch 2.13.0+cpu", "extrapolated", "torch.OutOfMemoryError"):
        assert text in page


def test_terminal_and_markdown_tables_keep_working() -> None:
    recs = zoo(hr=False)
    term = render_terminal(recs, PAPER)
    lines = term.splitlines()
    assert lines[0].split()[:2] == ["method", "trainable"] and "HR@10" not in lines[0]
    assert lines[2].startswith("iisan-cached") and "oom: torch.OutOfMemoryError" in term
    md = render_markdown(recs, PAPER)
    assert md.splitlines()[2].startswith("| iisan-cached |") and "0.45·t" in md


def test_table_names_the_methods_replayed_from_cuda_graphs() -> None:
    graphed = {"cuda_graphs": {"mode": "auto", "used": True, "reason": "captured", "capture_s": 1.0}}
    eager = {"cuda_graphs": {"mode": "auto", "used": False, "reason": "its step runs ...", "capture_s": None}}
    recs = [record("fft", 10.0, 1000, 5e8, execution=eager), record("iisan-cached", 0.1, 100, 1e7, execution=graphed)]
    assert "replayed from CUDA graphs (captured once, outside epoch time): iisan-cached; the others ran eagerly." in render_terminal(recs, PAPER)
    assert "CUDA graphs" not in render_terminal([record("fft", 10.0, 1000, 5e8, execution=eager), record("lora", 5.0, 10, 3e8)], PAPER)


def test_effectiveness_columns_only_when_present() -> None:
    assert "HR@10" not in render_terminal(zoo(hr=False), PAPER)
    assert "HR@10" in render_terminal(zoo(hr=True), PAPER)


def test_memory_breakdown_is_the_estimates_every_category() -> None:
    """The typed breakdown, buffers and batch included (where iisan-cached's cache and the inputs sit)."""
    full = {"parameters": 10, "buffers": 15, "gradients": 20, "optimizer_state": 30, "activations": 40, "temporaries": 5, "batch": 7}
    assert memory_breakdown(record("iisan-cached", 1, 1, 1, estimate={"peak_memory_bytes": 127, "breakdown": full})) == full
    assert memory_breakdown(record("fft", 1, 1, 1)) == {}
    assert memory_breakdown(record("fft", 1, 1, 1, estimate={"peak_memory_bytes": 5})) == {}
    with pytest.raises(TpmeError, match="unknown categories"):
        record("fft", 1, 1, 1, estimate={"breakdown": {"params_bytes": 10}})


def test_group_by_relabels_and_draws_a_trend(tmp_path: Path) -> None:
    recs = [record("fft", 40.0, 400_000, 40 * 2**20)]
    for r, t, m in ((4, 20.0, 20), (8, 21.0, 21), (16, 23.0, 22), (32, 26.0, 24)):
        recs.append(record("lora", t, 100_000 + 1000 * r, m * 2**20, options={"r": str(r), "alpha": "16"}))
    grouped, _ = apply_group_by(recs, "method_options.r")
    assert [g.label for g in grouped] == ["fft", "lora(alpha=16) [r=4]", "lora(alpha=16) [r=8]", "lora(alpha=16) [r=16]", "lora(alpha=16) [r=32]"]
    result = write_report(recs, tmp_path, PAPER, ("png", "csv"), group_by="method_options.r")
    assert result.warnings == []
    assert png_size(tmp_path / "group_trend.png")[0] == 1440
    rows = list(csv.DictReader(io.StringIO((tmp_path / "table.csv").read_text())))
    assert {r["group_value"] for r in rows} == {"", "4", "8", "16", "32"}


def test_group_by_field_nobody_has_is_an_error() -> None:
    with pytest.raises(TpmeError, match="no record has the field"):
        apply_group_by(zoo(), "axes.nothing")


def test_get_field_dotted_paths() -> None:
    r = record("lora", 1, 1, 1, options={"r": "8"})
    assert get_field(r, "method_options.r") == "8"
    assert get_field(r, "config.train.batch_size") == 8
    assert get_field(r, "estimate") is None


def test_inputs_merge_dedupe_and_sweep_directories(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "sweep" / "cell-a" / "results.jsonl", [record("fft", 2.0, 10, 10)])
    write_jsonl(tmp_path / "sweep" / "cell-b" / "results.jsonl", [record("frozen", 1.0, 5, 5)])
    assert [r.method for r in load_inputs([tmp_path / "sweep"])] == ["fft", "frozen"]
    assert len(load_inputs([a, a.parent])) == 1  # the same file twice counts once
    with pytest.raises(TpmeError):
        load_inputs([tmp_path / "missing"])


def test_formats_are_validated() -> None:
    assert parse_formats("HTML,markdown,tex") == ["html", "md", "latex"]
    assert parse_formats("pdf,svg,png,html,md,latex,csv") == ["pdf", "svg", "png", "html", "md", "latex", "csv"]
    with pytest.raises(TpmeError, match="docx"):
        parse_formats("html,docx")


def test_pareto_front() -> None:
    pts = [(1.0, 10.0), (2.0, 5.0), (3.0, 6.0), (4.0, 1.0), (5.0, 1.0)]
    assert pareto_front(pts) == [0, 1, 3]


def test_a_failing_figure_is_a_warning_not_a_lost_report(tmp_path: Path, monkeypatch) -> None:
    import tpme.reports.plots as plots

    def broken(summary, sens):
        raise RuntimeError("boom")

    monkeypatch.setattr(plots, "FIGURES", (plots.FigureSpec("broken", "Broken", broken),) + plots.FIGURES[:1])
    result = write_report(zoo(), tmp_path, PAPER, ("html", "png"))
    assert any("broken" in w and "boom" in w for w in result.warnings)
    assert (tmp_path / "report.html").is_file() and (tmp_path / "efficiency.png").is_file()


def test_all_cells_failed_still_reports(tmp_path: Path) -> None:
    recs = [record("fft", 0, 0, 0, status="error", error="ValueError: bad")]
    result = write_report(recs, tmp_path, PAPER, ("html", "md", "csv", "latex"))
    assert "ValueError: bad" in (tmp_path / "report.html").read_text()
    assert result.warnings == []


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=5000",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


def js_state(dom: str) -> tuple[str, str]:
    m = re.search(r'<p id="js-status" data-state="([^"]*)">([^<]*)</p>', dom)
    assert m, "status element missing from the DOM"
    return m.group(1), m.group(2)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_html_renders_in_headless_chromium(full_report: Path, tmp_path: Path) -> None:
    from PIL import Image

    page = full_report / "report.html"
    dump = chromium(["--dump-dom", page.as_uri()], tmp_path / "profile")
    assert dump.returncode == 0, dump.stderr[-2000:]
    state, text = js_state(dump.stdout)
    assert state == "ok", text
    assert "7 figure(s) decoded" in text
    assert "page script" not in dump.stdout
    console = [l for l in dump.stderr.splitlines() if "CONSOLE" in l]
    assert console == [], console
    shot = tmp_path / "shot.png"
    run = chromium([f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()], tmp_path / "profile")
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    assert png_size(shot) == (1200, 1600)
    with Image.open(shot) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50, "the screenshot is blank"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_chromium_check_detects_a_script_error(full_report: Path, tmp_path: Path) -> None:
    """The check above can fail: a page with a broken script reports it in the DOM and the console."""
    bad = tmp_path / "bad.html"
    bad.write_text((full_report / "report.html").read_text().replace('<p id="js-status"', "<script>undefinedFunction();</script><p id=\"js-status\"", 1))
    dump = chromium(["--dump-dom", bad.as_uri()], tmp_path / "profile")
    state, text = js_state(dump.stdout)
    assert state == "error" and "undefinedFunction" in text
    assert any("CONSOLE" in l and "undefinedFunction" in l for l in dump.stderr.splitlines())


def test_results_from_several_devices_carry_a_caution(tmp_path: Path) -> None:
    recs = [record("fft", 2.0, 10, 10), record("frozen", 1.0, 5, 5, device="NVIDIA H200")]
    write_report(recs, tmp_path, PAPER, ("html", "md"))
    for name in ("report.html", "report.md"):
        assert "come from 2 devices" in (tmp_path / name).read_text()


def shares_of_mixed_width() -> list:
    """Shares of 58.9, 33.8, 7.4 and 0.0 %: sorted as text, 7.4 would come after 58.9."""
    mib = 2**20
    spec = [("fft", 72.5, 428_416, 12.46), ("adapter", 20.0, 183_360, 9.43), ("lora", 13.7, 124_992, 9.23), ("bitfit", 10.7, 119_296, 8.22),
            ("iisan", 15.7, 187_462, 4.77), ("frozen", 17.6, 116_800, 3.99), ("iisan-cached", 2.87, 187_462, 3.31)]
    return [record(m, t, p, mem * mib) for m, t, p, mem in spec]


def test_secondary_tables_sort_by_number_and_show_the_direction(tmp_path: Path) -> None:
    write_report(shares_of_mixed_width(), tmp_path, PAPER, ("html",))
    page = (tmp_path / "report.html").read_text()
    share_table = page[page.index("share of simplex where lowest (%)"):]
    share_table = share_table[:share_table.index("</table>")]
    cells = re.findall(r'<td class="num" data-v="([^"]*)">([^<]*)</td>', share_table)
    assert len(cells) == 7 and all(float(v) == pytest.approx(float(text), abs=0.05) for v, text in cells)
    assert 'aria-sort="descending">share of simplex' in page and 'aria-sort="ascending">rank' in page
    assert "page script" not in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_sort_in_headless_chromium_is_numeric(tmp_path: Path) -> None:
    """Click the share header in the browser: rows come back in numeric order, the header says ascending."""
    write_report(shares_of_mixed_width(), tmp_path, PAPER, ("html",))
    probe = """<script>window.addEventListener('load',function(){
      var th=Array.prototype.filter.call(document.querySelectorAll('th'),function(h){return h.textContent.indexOf('share of simplex')===0;})[0];
      th.click();var t=th.closest('table');
      var v=Array.prototype.map.call(t.tBodies[0].rows,function(r){return r.cells[1].textContent;});
      var p=document.createElement('p');p.id='probe';p.textContent=th.getAttribute('aria-sort')+'|'+v.join(',');document.body.appendChild(p);});</script>"""
    page = tmp_path / "probe.html"
    page.write_text((tmp_path / "report.html").read_text().replace("</body>", probe + "</body>"))
    dump = chromium(["--dump-dom", page.as_uri()], tmp_path / "profile")
    m = re.search(r'<p id="probe">([^<]*)</p>', dump.stdout)
    assert m, dump.stderr[-2000:]
    direction, values = m.group(1).split("|")
    numbers = [float(v) for v in values.split(",")]
    assert direction == "ascending" and numbers == sorted(numbers) and numbers[-1] > 50 > numbers[-2] > 10 > numbers[1]


def test_energy_per_epoch_and_adapter_size_reach_the_tables(tmp_path: Path) -> None:
    from tpme.results.record import Memory

    recs = [record("fft", 2.0, 1000, 5e8), record("lora", 1.0, 10, 1e8)]
    for r, joules, size in zip(recs, (300.0, 100.0), (4_096, 128)):
        r.memory = Memory(energy_j=joules)  # over the 4 timed steps of an 8-step epoch
        r.adapter_bytes = size
    assert recs[0].energy_per_epoch_j == 600.0
    term = render_terminal(recs, PAPER)
    assert "energy per epoch (J)" in term and "600.0" in term and "adapter size (KiB)" in term and "4.00" in term
    write_report(recs, tmp_path, Weights.parse("0.4,0.1,0.4,0.1"), ("csv", "md", "html"))
    rows = {r["label"]: r for r in csv.DictReader(io.StringIO((tmp_path / "table.csv").read_text()))}
    assert float(rows["fft"]["energy_per_epoch_j"]) == 600.0 and float(rows["lora"]["adapter_bytes"]) == 128
    assert float(rows["fft"]["e_norm"]) == 1.0 and float(rows["fft"]["weight_energy"]) == 0.1
    for name in ("report.md", "report.html"):
        text = (tmp_path / name).read_text()
        assert "energy per epoch (J)" in text and "a4 (energy per epoch) = 0.1" in text, name
