"""preview.html: the survey of a pack as raters will see it, offline, in one self-contained file.

Pages are shown one at a time like Qualtrics (instructions + rater code, then one page per quartet, then the
end); forced response is on as in the QSF. A thin bar at the top, which raters never see, lets the study team
jump to any page (``preview.html#q7`` opens quartet 7) and switch forced response off to browse. Images load
from ``upload/images/`` next to the file, so nothing is fetched from the network. After loading, the page
records in ``<html data-images-loaded=... data-images-total=...>`` how many images decoded (for tests).
"""

from __future__ import annotations

import html

from core.reader_study import questionnaire
from core.reader_study.spec import LETTERS, QUESTION, RATE, RATER_CODE_TEXT, SCALE, PackSpec, instructions_html

CSS = """
body{margin:0;font:15px/1.45 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;background:#f3f3f3;color:#222}
.bar{background:#333;color:#eee;padding:6px 14px;font-size:13px}
.bar select,.bar input{font-size:13px}
main{max-width:1120px;margin:18px auto;background:#fff;padding:22px 28px;border-radius:4px;
box-shadow:0 1px 3px rgba(0,0,0,.15)}
.page{display:none}.page.on{display:block}
.choices{display:flex;gap:12px;justify-content:space-between;margin:12px 0 18px}
.choice{flex:1;text-align:center;cursor:pointer;border:2px solid transparent;padding:4px;border-radius:4px}
.choice img{width:100%;max-width:256px;height:auto;display:block;margin:0 auto 6px;background:#000;
image-rendering:auto}
.choice:has(input:checked){border-color:#1f6fd1;background:#eef4fc}
table.matrix{border-collapse:collapse;width:100%}
table.matrix th,table.matrix td{padding:6px 8px;text-align:center;border-bottom:1px solid #e4e4e4}
table.matrix td:first-child{text-align:left;font-weight:600}
nav{max-width:1120px;margin:0 auto 30px;text-align:right}
nav button{font-size:16px;padding:8px 26px;background:#1f6fd1;color:#fff;border:0;border-radius:3px;cursor:pointer}
.err{color:#b00020;font-weight:600;min-height:1.4em}
.progress{float:left;color:#666;padding-top:8px}
"""

JS = """
const pages=[...document.querySelectorAll('.page')];let cur=0;
const force=document.getElementById('force'),jump=document.getElementById('jump');
pages.forEach((p,i)=>{const o=document.createElement('option');o.value=i;o.textContent=p.dataset.title;
 jump.appendChild(o);});
function show(i){cur=Math.max(0,Math.min(i,pages.length-1));pages.forEach((p,k)=>p.classList.toggle('on',k===cur));
 jump.value=cur;document.getElementById('next').style.display=cur===pages.length-1?'none':'';
 document.getElementById('progress').textContent=`Page ${cur+1} of ${pages.length}`;
 document.getElementById('err').textContent='';window.scrollTo(0,0);}
function complete(p){for(const n of new Set([...p.querySelectorAll('input[type=radio]')].map(e=>e.name)))
 if(!p.querySelector(`input[name="${n}"]:checked`))return false;
 for(const t of p.querySelectorAll('input[type=text]:not([data-optional]),input[type=number]'))
 if(!t.value.trim())return false;return true;}
document.getElementById('next').onclick=()=>{if(force.checked&&!complete(pages[cur])){
 document.getElementById('err').textContent='Please answer every question on this page.';return;}show(cur+1);};
jump.onchange=()=>show(+jump.value);
function fromHash(){const h=location.hash.slice(1);if(h==='end')return pages.length-1;const m=/^q(\\d+)$/.exec(h);
 return m?+m[1]:0;}
window.addEventListener('hashchange',()=>show(fromHash()));show(fromHash());
window.addEventListener('load',()=>{const im=[...document.images];
 document.documentElement.dataset.imagesTotal=im.length;
 document.documentElement.dataset.imagesLoaded=im.filter(i=>i.complete&&i.naturalWidth>0).length;});
"""


def build_preview(spec: PackSpec) -> str:
    e = html.escape
    intro = instructions_html(spec)
    about = questionnaire.preview_html() if spec.questionnaire else ""
    pages = [f'<section class="page" data-title="Instructions">{intro}'
             f'<p><label>{e(RATER_CODE_TEXT)} <input type="text" name="rater_code" size="12"></label></p>{about}'
             "</section>"]
    for q in range(1, spec.count + 1):
        choices = "".join(
            f'<label class="choice"><img src="upload/images/{e(i.image_file)}" alt="Image {i.letter}" '
            f'width="{spec.size}" height="{spec.size}" style="max-width:{spec.size}px">'
            f'<input type="radio" name="q{q}_pick" value="{i.position}"> '
            f"<b>{i.letter}</b></label>" for i in spec.quartet(q))
        header = "".join(f"<th>{e(v)}</th>" for v in SCALE.values())
        rows = "".join(f"<tr><td>Image {letter}</td>" + "".join(
            f'<td><input type="radio" name="q{q}_rate_{p}" value="{k}" aria-label="Image {letter}: {k}"></td>'
            for k in SCALE) + "</tr>" for p, letter in enumerate(LETTERS, 1))
        pages.append(f'<section class="page" data-title="Quartet {q}" id="q{q}"><p><b>Quartet {q} of '
                     f"{spec.count}.</b> {QUESTION}</p><div class=\"choices\">{choices}</div><p>{RATE}</p>"
                     f'<table class="matrix"><tr><th></th>{header}</tr>{rows}</table>'
                     f"{questionnaire.free_text_preview(q) if spec.free_text else ''}</section>")
    bar = (f"Study-team preview of pack {e(spec.pack_id)} ({spec.count} quartets; "
           f"{page_order('quartets', spec.shuffle_pages)}); offline, nothing\nis recorded.")
    return preview_document(bar, pages)


def page_order(units: str, shuffle_pages: bool) -> str:
    """How raters will see the pages, for the preview's bar (`units`: "quartets", "images")."""
    return (f"the {units} appear in a random order per rater in Qualtrics (block randomizer)"
            if shuffle_pages else "all raters see this order")


def preview_document(bar: str, pages: list[str]) -> str:
    """The offline preview page of either design: the study-team `bar`, the survey `pages`, the end page, the
    page script (forced response, page jumps)."""
    pages = pages + ['<section class="page" data-title="End"><p>We thank you for your time spent taking this '
                     "survey.<br>Your response has been recorded.</p></section>"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Survey preview</title><style>{CSS}</style></head>
<body>
<div class="bar">{bar} Page <select id="jump"></select> <label><input type="checkbox" id="force" checked> forced
response</label></div>
<main>
{chr(10).join(pages)}
<div class="err" id="err"></div>
</main>
<nav><span class="progress" id="progress"></span><button id="next" type="button">&rarr;</button></nav>
<script>{JS}</script>
</body></html>
"""
