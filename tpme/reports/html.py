"""The self-contained HTML report: inline CSS and JS, figures as base64 PNG data URIs, and a
Content-Security-Policy that forbids any network request, so the file opens anywhere offline.

The page's script sorts tables on a header click (numbers by the raw value in each cell's
data-v, the direction shown on the header as aria-sort and an arrow) and, once loaded, writes
its state into #js-status (`data-state="ok"`, hidden, when it ran without errors and every
figure decoded; shown only when something failed); a test in a headless browser reads that
back from the DOM.
"""
from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass

from tpme.metrics.sensitivity import Sensitivity
from tpme import __version__
from tpme.reports.provenance import Provenance
from tpme.reports.reference import baseline_sentences, weights_sentence
from tpme.reports.summary import Summary
from tpme.reports.table import render_html_table

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}th,td{padding:.25rem .6rem;border-bottom:1px solid #e5e5e5}
th{background:#f5f5f5;text-align:left;cursor:pointer}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{color:#a00}.note{font-size:.85rem;color:#555;margin:.2rem 0}
figure{margin:1.2rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.85rem;color:#444}
pre{background:#f7f7f7;padding:.6rem;overflow:auto;font-size:.8rem;max-height:20rem}
dl.prov{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;font-size:.9rem}dl.prov dt{font-weight:600}dl.prov dd{margin:0;word-break:break-word}
.caution{background:#fff4e5;border-left:4px solid #f0a030;padding:.4rem .7rem}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:.7em}th[aria-sort=descending]::after{content:" \\25BC";font-size:.7em}
.reference{background:#eef5ff;border-left:4px solid #4e79a7;padding:.4rem .7rem}
#js-status{font-size:.85rem;color:#a00}#js-status[data-state=ok]{display:none}footer{font-size:.8rem;color:#777;margin-top:2rem}
"""

HEAD_SCRIPT = """
window.tpmeErrors=[];
window.addEventListener('error',function(e){window.tpmeErrors.push(String(e.message||e.type));});
"""

BODY_SCRIPT = """
(function(){
  function key(td){var v=td.getAttribute('data-v');return v===null?td.textContent:(v===''?NaN:parseFloat(v));}
  document.querySelectorAll('table.sortable').forEach(function(t){
    t.querySelectorAll('th').forEach(function(th,i){
      th.addEventListener('click',function(){
        var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows),asc=th.getAttribute('aria-sort')!=='ascending';
        rows.sort(function(a,b){var x=key(a.cells[i]),y=key(b.cells[i]);
          if(typeof x==='number'&&typeof y==='number'){if(isNaN(x))return 1;if(isNaN(y))return -1;return asc?x-y:y-x;}
          return asc?String(x).localeCompare(String(y)):String(y).localeCompare(String(x));});
        rows.forEach(function(r){body.appendChild(r);});
        t.querySelectorAll('th').forEach(function(o){o.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort',asc?'ascending':'descending');
      });
    });
  });
  function done(){
    var s=document.getElementById('js-status');
    var bad=Array.prototype.filter.call(document.images,function(im){return !im.complete||im.naturalWidth===0;});
    if(window.tpmeErrors.length){s.setAttribute('data-state','error');s.textContent='script errors: '+window.tpmeErrors.join('; ');}
    else if(bad.length){s.setAttribute('data-state','error');s.textContent=bad.length+' figure(s) failed to decode';}
    else{s.setAttribute('data-state','ok');s.textContent=document.images.length+' figure(s) decoded';}
  }
  if(document.readyState==='complete'){done();}else{window.addEventListener('load',done);}
})();
"""

PX_PER_INCH = 135  # a 7.2 in figure spans about 970 px of the 1100 px page
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


@dataclass
class EmbeddedFigure:
    name: str
    title: str
    caption: str
    png: bytes
    width_in: float  # the figure's width, so figures keep one scale on the page


def _e(text: object) -> str:
    return html.escape(str(text))


def num(value: float | int | None, text: str) -> str:
    """A number cell: shown as `text`, sorted by `value`."""
    return f'<td class="num" data-v="{"" if value is None else value}">{_e(text)}</td>'


def sensitivity_html(sens: Sensitivity) -> str:
    w = sens.chosen.as_tuple()
    rows = "".join(f"<tr><td>{_e(m)}</td>{num(100 * s, f'{100 * s:.1f}')}</tr>" for m, s in sorted(sens.shares.items(), key=lambda kv: -kv[1]))
    bsum = sens.boundary_summary()
    brows = "".join(
        f"<tr><td>{_e(b['between'][0])}</td><td>{_e(b['between'][1])}</td>{num(b['edges'], str(b['edges']))}<td>{_e(', '.join(f'{x:.3f}' for x in b['nearest']))}</td></tr>"
        for b in bsum
    )
    return (
        f"<p>Grid step {sens.step:g} ({len(sens.grid)} weight triples a1 + a2 + a3 = 1). At the chosen weights "
        f"({w[0]:g}, {w[1]:g}, {w[2]:g}) the lowest TPME is <b>{_e(' = '.join(sens.chosen_winners))}</b>. "
        f"Rank stability against the chosen weights: Kendall τ mean {sens.tau_mean:.3f}, min {sens.tau_min:.3f}; "
        f"the ranking is identical at {100 * sens.identical_share:.1f}% of the grid.</p>"
        f"<table class=\"sortable\"><thead><tr><th>method</th><th class=\"num\" aria-sort=\"descending\">share of simplex where lowest (%)</th></tr></thead><tbody>{rows}</tbody></table>"
        "<p class=\"note\">Ties: methods within 1e-9 of the lowest TPME share a point, which counts 1/k towards each of the k tied methods.</p>"
        + (
            "<h3>Where the winner changes</h3><table class=\"sortable\"><thead><tr><th>winner</th><th>neighbour</th><th class=\"num\">grid edges</th>"
            f"<th>boundary nearest the chosen weights (a1, a2, a3)</th></tr></thead><tbody>{brows}</tbody></table>"
            if bsum else "<p>The winner is the same over the whole simplex.</p>"
        )
    )


def render_html(summary: Summary, prov: Provenance, figures: list[EmbeddedFigure], sens: Sensitivity | None, title: str) -> str:
    figs = "".join(
        f'<figure id="fig-{_e(f.name)}"><img alt="{_e(f.title)}" style="width:{f.width_in * PX_PER_INCH:.0f}px" src="data:image/png;base64,{base64.b64encode(f.png).decode()}">'
        f"<figcaption><b>{_e(f.title)}.</b> {_e(f.caption)}</figcaption></figure>"
        for f in figures
    )
    prov_dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in prov.items())
    src_rows = "".join(
        f"<tr><td>{_e(s['label'])}</td><td>{_e(s['epoch_time'] or '-')}</td><td>{_e(s['memory'] or '-')} ({_e(s['memory_source'] or '-')})</td><td>{_e(s['effectiveness'] or 'not evaluated')}</td></tr>"
        for s in prov.sources
    )
    failures = (
        "".join(f"<h3>{_e(f['label'])} (repeat {_e(f['repeat'])}): {_e(f['status'])}</h3><pre>{_e(_tail(f['error']))}</pre>" for f in prov.failures)
        if prov.failures else "<p>None: every cell finished.</p>"
    )
    configs = "".join(f"<pre>{_e(json.dumps(c, indent=2))}</pre>" for c in prov.configs)
    group = f" grouped by <code>{_e(summary.group_by)}</code>" if summary.group_by else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{CSS}</style><script>{HEAD_SCRIPT}</script></head>
<body>
<h1>{_e(title)}</h1>
<p>{len(summary.rows)} method(s){group}. {_e(weights_sentence(summary))} Click a column header to sort; the arrow shows the direction.</p>
{"".join(f'<p class="caution">{_e(c)}</p>' for c in prov.cautions())}
<h2>Efficiency table</h2>
{render_html_table(summary)}
{"".join(f'<p class="reference"><b>Reference.</b> {_e(line)}</p>' for line in baseline_sentences(summary))}
<h2>Figures</h2>
{figs or '<p>No figure could be drawn from these records.</p>'}
<h2>Weight sensitivity</h2>
{sensitivity_html(sens) if sens else '<p>Not computed (no completed results).</p>'}
<h2>Provenance</h2>
<dl class="prov">{prov_dl}</dl>
<h3>Measured, extrapolated or estimated</h3>
<table><thead><tr><th>method</th><th>epoch time</th><th>peak memory</th><th>HR@10 / NDCG@10</th></tr></thead><tbody>{src_rows}</tbody></table>
<h3>Configuration</h3>
{configs or '<p>-</p>'}
<h2>Failed cells</h2>
{failures}
<p id="js-status" data-state="not-run">Sorting needs JavaScript, which did not run in this viewer.</p>
<footer>Written by tpme {_e(__version__)}; self-contained, the page makes no network request.</footer>
<script>{BODY_SCRIPT}</script>
</body></html>
"""


def _tail(text: str, lines: int = 25) -> str:
    parts = (text or "").rstrip().splitlines()
    return "\n".join(parts[-lines:]) if parts else "(no error text)"
