"""The review page: report.html as the run wrote it, with the reviewer's controls added.

The server injects ``HEAD`` before ``</head>`` and ``SCRIPT`` before ``</body>``; report.html on
disk stays a static page. Keys (shown on the page): j/k or arrows move between SKUs, a approves
the best pick, 1-9 pick that candidate (in the order shown), r then 1-9 rejects with that
reason, u shows only undecided SKUs.
"""

from __future__ import annotations

CSS = """
.rv-bar{position:sticky;top:0;z-index:5;background:#222;color:#fff;padding:.5em .8em;margin:-1.5em -1.5em 1em;
 display:flex;flex-wrap:wrap;gap:.8em;align-items:center;font-size:.9em}
.rv-bar input{padding:.2em .4em}.rv-bar kbd,.rv-tools kbd{background:#eee;color:#222;border-radius:3px;
 padding:0 .3em;font-size:.85em;border:1px solid #bbb}
.sku.rv-current{outline:3px solid #1565c0;outline-offset:2px}
.rv-tools{margin:.5em 0;display:flex;flex-wrap:wrap;gap:.5em;align-items:center}
.rv-tools button,figure .rv-pick{padding:.25em .7em;border:1px solid #777;background:#fff;cursor:pointer;border-radius:3px}
.rv-tools button.rv-approve{background:#2e7d32;color:#fff;border-color:#2e7d32}
.rv-tools button.rv-reject{background:#c62828;color:#fff;border-color:#c62828}
figure .rv-pick{margin-top:.3em;font-size:.85em}
.rv-state{font-weight:600}.rv-state.approved,.rv-state.picked{color:#2e7d32}.rv-state.rejected{color:#c62828}
.rv-previous{color:#6a1b9a;font-size:.85em}
.rv-reasons{display:none;gap:.4em;flex-wrap:wrap}.rv-reasons.open{display:flex}
figure.rv-chosen img{border:6px solid #1565c0}
.rv-error{color:#c62828;font-weight:600}
"""

HEAD = f"<style>{CSS}</style>"

SCRIPT = r"""
<script>
(function(){
'use strict';
var state = null, current = 0, rejecting = false, undecidedOnly = false;
var blocks = Array.prototype.slice.call(document.querySelectorAll('.sku[data-sku]'));
function el(tag, attrs, text){var e=document.createElement(tag);
  for (var k in attrs) e.setAttribute(k, attrs[k]); if (text!==undefined) e.textContent=text; return e;}
function reviewer(){return document.getElementById('rv-reviewer').value.trim();}
function info(sku){return state.skus[sku];}

function bar(){
  var b = el('div', {'class':'rv-bar', id:'rv-bar'});
  b.appendChild(el('b', {}, 'Review'));
  var label = el('label', {}, 'reviewer ');
  var input = el('input', {id:'rv-reviewer', size:'12'});
  input.value = localStorage.getItem('autoshoot-reviewer') || state.reviewer;
  input.addEventListener('change', function(){localStorage.setItem('autoshoot-reviewer', reviewer());});
  label.appendChild(input); b.appendChild(label);
  b.appendChild(el('span', {id:'rv-count'}));
  var keys = el('span', {});
  keys.innerHTML = '<kbd>j</kbd>/<kbd>k</kbd> next/previous &middot; <kbd>a</kbd> approve best &middot; '+
    '<kbd>1</kbd>-<kbd>9</kbd> pick that candidate &middot; <kbd>r</kbd> then <kbd>1</kbd>-<kbd>9</kbd> reject '+
    'with a reason &middot; <kbd>u</kbd> undecided only';
  b.appendChild(keys);
  b.appendChild(el('span', {id:'rv-message', 'class':'rv-error', role:'status'}));
  document.body.insertBefore(b, document.body.firstChild);
}

function tools(block){
  var sku = block.dataset.sku, item = info(sku);
  var t = el('div', {'class':'rv-tools'});
  var status = el('span', {'class':'rv-state'});
  t.appendChild(status);
  if (item.status !== 'failed' && item.best_index !== null){
    var ok = el('button', {'class':'rv-approve', type:'button', title:'approve the best pick (a)'}, 'Approve best');
    ok.addEventListener('click', function(){select(block); approve(block);});
    t.appendChild(ok);
  }
  var no = el('button', {'class':'rv-reject', type:'button', title:'reject with a reason (r)'}, 'Reject…');
  no.addEventListener('click', function(){select(block); openReasons(block);});
  t.appendChild(no);
  var reasons = el('span', {'class':'rv-reasons'});
  state.reasons.forEach(function(reason, i){
    var r = el('button', {type:'button', 'data-reason':reason}, (i+1)+' '+reason);
    r.addEventListener('click', function(){reject(block, reason);});
    reasons.appendChild(r);
  });
  var other = el('input', {placeholder:'another reason, Enter', size:'22', 'class':'rv-other'});
  other.addEventListener('keydown', function(ev){
    ev.stopPropagation();
    if (ev.key === 'Enter' && other.value.trim()) reject(block, other.value.trim());
    if (ev.key === 'Escape') closeReasons();
  });
  reasons.appendChild(other);
  t.appendChild(reasons);
  if (item.previous) t.appendChild(el('span', {'class':'rv-previous'}, item.previous));
  var meta = block.querySelector('.meta');
  meta.parentNode.insertBefore(t, meta.nextSibling);
  figures(block).forEach(function(fig, i){
    var p = el('button', {'class':'rv-pick', type:'button', title:'pick as best ('+(i+1)+')'},
      'Pick as best ('+(i+1)+')');
    p.addEventListener('click', function(ev){ev.preventDefault(); select(block); pick(block, +fig.dataset.candidate);});
    fig.appendChild(p);
  });
  show(block);
}

function figures(block){return Array.prototype.slice.call(block.querySelectorAll('figure[data-candidate]'));}

function show(block){
  var d = info(block.dataset.sku).decision, s = block.querySelector('.rv-state');
  s.className = 'rv-state' + (d ? ' '+d.decision : '');
  if (!d) s.textContent = 'undecided';
  else if (d.decision === 'rejected') s.textContent = 'rejected: '+d.reason+' ('+d.reviewer+', '+d.decided_at+')';
  else s.textContent = d.decision+' candidate '+d.candidate+' ('+d.reviewer+', '+d.decided_at+')'+
    (d.carried_from ? ' carried from '+d.carried_from : '');
  figures(block).forEach(function(fig){
    fig.classList.toggle('rv-chosen', !!d && d.decision !== 'rejected' && +fig.dataset.candidate === d.candidate);});
  block.dataset.decision = d ? d.decision : '';
  count();
}

function count(){
  var n = blocks.filter(function(b){return info(b.dataset.sku).decision;}).length;
  document.getElementById('rv-count').textContent = n+' of '+blocks.length+' decided';
}

function message(text){document.getElementById('rv-message').textContent = text || '';}

function send(block, body){
  body.sku = block.dataset.sku; body.reviewer = reviewer();
  return fetch('/_review/decide', {method:'POST', headers:{'Content-Type':'application/json'},
    body:JSON.stringify(body)}).then(function(resp){
      return resp.json().then(function(data){
        if (!resp.ok){message(data.error || ('error '+resp.status)); return;}
        message('');
        info(block.dataset.sku).decision = data.decision;
        show(block); closeReasons(); next();
      });
    }).catch(function(err){message('not saved: '+err);});
}
function approve(block){var item = info(block.dataset.sku);
  if (item.best_index === null){message(block.dataset.sku+' has no best pick to approve'); return;}
  send(block, {decision:'approved', candidate:item.best_index});}
function pick(block, index){
  send(block, {decision: index === info(block.dataset.sku).best_index ? 'approved' : 'picked', candidate:index});}
function reject(block, reason){send(block, {decision:'rejected', reason:reason});}
function openReasons(block){closeReasons(); rejecting = true;
  block.querySelector('.rv-reasons').classList.add('open');}
function closeReasons(){rejecting = false;
  document.querySelectorAll('.rv-reasons.open').forEach(function(r){r.classList.remove('open');});}

function visible(){return blocks.filter(function(b){return b.style.display !== 'none';});}
function select(block){
  blocks.forEach(function(b){b.classList.remove('rv-current');});
  if (!block) return;
  current = blocks.indexOf(block); block.classList.add('rv-current');
}
function move(step){
  var v = visible(); if (!v.length) return;
  var at = v.indexOf(blocks[current]);
  var target = v[Math.max(0, Math.min(v.length-1, at < 0 ? 0 : at+step))];
  select(target); target.scrollIntoView({block:'start'}); window.scrollBy(0, -60);
}
function next(){ if (undecidedOnly) applyFilter(); move(1); }
function applyFilter(){
  blocks.forEach(function(b){ if (undecidedOnly && b.dataset.decision) b.style.display='none';});
}

document.addEventListener('keydown', function(ev){
  if (!state || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.target && (ev.target.tagName === 'INPUT' || ev.target.tagName === 'TEXTAREA')) return;
  var block = blocks[current]; if (!block) return;
  var digit = /^[1-9]$/.test(ev.key) ? +ev.key : 0;
  if (rejecting){
    if (digit && digit <= state.reasons.length) reject(block, state.reasons[digit-1]);
    else if (ev.key === 'Escape') closeReasons();
    ev.preventDefault(); return;
  }
  if (ev.key === 'j' || ev.key === 'ArrowDown'){move(1);}
  else if (ev.key === 'k' || ev.key === 'ArrowUp'){move(-1);}
  else if (ev.key === 'a'){approve(block);}
  else if (ev.key === 'r'){openReasons(block);}
  else if (ev.key === 'u'){undecidedOnly = !undecidedOnly;
    if (undecidedOnly) applyFilter(); else window.show('all');}
  else if (digit){var f = figures(block)[digit-1]; if (f) pick(block, +f.dataset.candidate); else return;}
  else return;
  ev.preventDefault();
});

fetch('/_review/state').then(function(r){return r.json();}).then(function(data){
  state = data; bar(); blocks.forEach(tools); select(blocks[0]);
  document.body.dataset.review = 'ready';
}).catch(function(err){document.body.insertBefore(el('p', {'class':'rv-error'}, 'review unavailable: '+err),
  document.body.firstChild);});
})();
</script>
"""
