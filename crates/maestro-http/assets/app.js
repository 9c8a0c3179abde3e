// The Maestro dashboard: plain JavaScript, no framework, nothing loaded from elsewhere.
//
// Hash routes: #/ (workflows), #/new (a new workflow), #/runs (recent runs),
// #/workflows/ID[?version=N] (a workflow: its DAG, nodes, runs, and a form to start one) and
// #/runs/RUN_ID (a run: the DAG coloured by live WebSocket events, node details, the event log
// and the control buttons).
//
// Every API call carries the token of the token dialog (`Authorization: Bearer`); WebSockets,
// which cannot carry headers from a browser, offer it as the subprotocol
// `maestro.bearer.<base64url(token)>` next to `maestro`. A 401 opens the token dialog.
'use strict';

(function () {
  const API = '/api/v1';
  const TOKEN_KEY = 'maestro.token';
  const NODE_STATUSES = ['pending', 'ready', 'running', 'retrying', 'waiting_approval',
    'completed', 'failed', 'skipped', 'cancelled'];
  const STATUS_LABEL = {
    pending: 'pending', ready: 'ready', running: 'running', retrying: 'retrying',
    waiting_approval: 'waiting for approval', completed: 'completed', failed: 'failed',
    skipped: 'skipped', cancelled: 'cancelled', paused: 'paused',
  };
  const TERMINAL_RUN = ['completed', 'failed', 'cancelled'];
  const TERMINAL_NODE = ['completed', 'failed', 'skipped', 'cancelled'];

  // ---------------------------------------------------------------- small DOM helpers

  /** Creates an element: h('a', {href: '#/'}, 'text', child…). Text is never parsed as HTML. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const c of [children].flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const enc = encodeURIComponent;

  function statusBadge(status) {
    const s = status || 'unknown';
    return h('span', { class: `badge status-${s}`, 'data-status': s }, STATUS_LABEL[s] || s);
  }

  function fmtTime(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return d.toLocaleString(undefined, {
      year: 'numeric', month: 'short', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
  }

  function fmtClock(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return '';
    const p = (n, w) => String(n).padStart(w || 2, '0');
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  }

  function fmtDuration(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
    if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  function between(start, end) {
    if (!start) return null;
    const a = Date.parse(start);
    const b = end ? Date.parse(end) : Date.now();
    return b - a;
  }

  function shortId(id) {
    return id && id.length > 13 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id;
  }

  function pretty(value) {
    return JSON.stringify(value, null, 2);
  }

  // ---------------------------------------------------------------- token and API

  function getToken() {
    try { return localStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
  }

  function setToken(t) {
    try {
      if (t) localStorage.setItem(TOKEN_KEY, t); else localStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage disabled: the token lasts for this page only */ }
    memoryToken = t;
    updateTokenButton();
  }

  let memoryToken = getToken();

  function updateTokenButton() {
    const b = $('#token-button');
    b.textContent = memoryToken ? 'API token ✓' : 'API token';
    b.setAttribute('aria-label', memoryToken ? 'API token (set)' : 'API token (not set)');
  }

  /** base64url without padding of the UTF-8 bytes of `s`. */
  function base64url(s) {
    const bytes = new TextEncoder().encode(s);
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  class ApiError extends Error {
    constructor(status, problem) {
      const p = problem || {};
      super(p.detail || p.title || `HTTP ${status}`);
      this.status = status;
      this.title = p.title || `HTTP ${status}`;
      this.detail = p.detail || '';
      this.code = p.code || '';
      this.errors = Array.isArray(p.errors) ? p.errors : [];
      this.requestId = p.request_id || '';
    }
  }

  /** Calls the API; resolves to the parsed JSON (or text), rejects with an ApiError. */
  async function api(method, path, body, opts) {
    const headers = { Accept: (opts && opts.accept) || 'application/json' };
    if (memoryToken) headers.Authorization = `Bearer ${memoryToken}`;
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path.startsWith('/') ? path : `${API}/${path}`, init);
    } catch (e) {
      throw new ApiError(0, { title: 'The server cannot be reached', detail: String(e.message || e), code: 'network_error' });
    }
    const type = res.headers.get('content-type') || '';
    if (!res.ok) {
      let problem = null;
      if (type.includes('json')) {
        try { problem = await res.json(); } catch (_) { problem = null; }
      }
      const err = new ApiError(res.status, problem);
      if (res.status === 401) {
        openTokenDialog(memoryToken
          ? 'The server refused this token. Enter a valid one.'
          : 'This server needs an API token.');
      }
      throw err;
    }
    if (res.status === 204) return null;
    if (type.includes('json')) return res.json();
    return res.text();
  }

  // ---------------------------------------------------------------- messages

  let flashTimer = null;

  /** Shows an error (an ApiError or any Error) or a notice at the top of the page. */
  function flash(what, kind) {
    const box = $('#flash');
    clear(box);
    box.className = `flash ${kind || (what instanceof Error ? 'error' : 'info')}`;
    if (what instanceof Error) append(box, problemView(what));
    else append(box, h('p', {}, what));
    const close = h('button', { type: 'button', class: 'button ghost small', 'aria-label': 'Dismiss message' }, '×');
    close.addEventListener('click', () => { box.hidden = true; });
    box.prepend(close);
    box.hidden = false;
    clearTimeout(flashTimer);
    if (!(what instanceof Error)) flashTimer = setTimeout(() => { box.hidden = true; }, 5000);
  }

  function clearFlash() {
    $('#flash').hidden = true;
  }

  /** A readable problem+json: title, detail, code, and each validation error. */
  function problemView(err) {
    const parts = [];
    const head = h('p', { class: 'problem-title' },
      h('strong', {}, err.title || 'Error'),
      err.status ? h('span', { class: 'muted' }, ` (HTTP ${err.status})`) : null,
      err.code ? [' ', h('code', { class: 'code' }, err.code)] : null);
    parts.push(head);
    if (err.detail && err.detail !== err.title) parts.push(h('p', { class: 'problem-detail' }, err.detail));
    else if (!err.title && err.message) parts.push(h('p', {}, err.message));
    if (err.errors && err.errors.length) {
      parts.push(h('ul', { class: 'problem-errors' }, err.errors.map(problemItem)));
    }
    return h('div', { class: 'problem' }, parts);
  }

  function problemItem(e) {
    const where = [];
    if (e.node_id) where.push(h('span', { class: 'where' }, 'node ', h('code', {}, e.node_id)));
    if (Array.isArray(e.nodes) && e.nodes.length) {
      where.push(h('span', { class: 'where' }, 'nodes ', h('code', {}, e.nodes.join(' → '))));
    }
    if (e.path) where.push(h('span', { class: 'where' }, 'at ', h('code', {}, e.path)));
    return h('li', {},
      e.code ? h('code', { class: 'code' }, e.code) : null, ' ',
      h('span', {}, e.message || ''), where.length ? [' — ', where] : null);
  }

  // ---------------------------------------------------------------- token dialog

  function openTokenDialog(reason) {
    const d = $('#token-dialog');
    $('#token-reason').textContent = reason || '';
    $('#token-input').value = memoryToken;
    if (!d.open) {
      if (typeof d.showModal === 'function') d.showModal(); else d.setAttribute('open', '');
    }
    $('#token-input').focus();
  }

  function initTokenDialog() {
    const d = $('#token-dialog');
    $('#token-button').addEventListener('click', () => openTokenDialog(''));
    $('#token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      setToken($('#token-input').value.trim());
      d.close();
      flash('Token saved.', 'info');
      render();
    });
    $('#token-clear').addEventListener('click', () => {
      setToken('');
      $('#token-input').value = '';
      d.close();
      flash('Token forgotten.', 'info');
      render();
    });
    $('#token-cancel').addEventListener('click', () => d.close());
    updateTokenButton();
  }

  // ---------------------------------------------------------------- the DAG

  /** Fetches the workflow's SVG (the server's Sugiyama layout) and returns it as an element. */
  async function loadGraph(workflowId, version) {
    const q = version ? `&version=${enc(version)}` : '';
    const text = await api('GET', `workflows/${enc(workflowId)}/graph?format=svg${q}`, undefined,
      { accept: 'image/svg+xml' });
    // The server's picture carries a <style> for standalone use; the page's style sheet styles
    // it here, and the Content-Security-Policy (no inline style) would refuse it even in a
    // parsed, never-shown document: it goes before parsing.
    const source = String(text).replace(/<style[\s\S]*?<\/style>/g, '');
    const doc = new DOMParser().parseFromString(source, 'image/svg+xml');
    const svg = doc.documentElement;
    if (!svg || svg.nodeName !== 'svg' || doc.getElementsByTagName('parsererror').length) {
      throw new ApiError(0, { title: 'The graph could not be drawn', detail: 'the server sent no valid SVG' });
    }
    // Only what the server draws is copied into the page (an allow-list of elements and of
    // their plain attributes: no href, no event handler, no style); anything else is dropped
    // with everything inside it.
    const node = sanitizeSvg(svg);
    if (!node) {
      throw new ApiError(0, { title: 'The graph could not be drawn', detail: 'the server sent no valid SVG' });
    }
    node.classList.add('maestro-dag');
    node.removeAttribute('width');
    node.removeAttribute('height');
    node.setAttribute('preserveAspectRatio', 'xMidYMin meet');
    fitGraph(node);
    for (const g of $$('g.node', node)) {
      const id = g.getAttribute('data-node-id');
      g.setAttribute('role', 'button');
      g.setAttribute('tabindex', '0');
      g.setAttribute('aria-label', `node ${id}`);
      const box = $('rect.box', g) || $('rect', g);
      const w = box ? parseFloat(box.getAttribute('width')) : NaN;
      if (box && !Number.isNaN(w)) {
        const x = parseFloat(box.getAttribute('x') || '0');
        const y = parseFloat(box.getAttribute('y') || '0');
        const dot = document.createElementNS('http://www.w3.org/2000/svg', 'circle');
        dot.setAttribute('class', 'dot');
        dot.setAttribute('cx', String(x + w - 8));
        dot.setAttribute('cy', String(y + 8));
        dot.setAttribute('r', '4');
        g.append(dot);
      }
    }
    return node;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  // The elements and attributes `render_svg` (crates/maestro-http/src/handlers/graph.rs) emits.
  // `id` is kept on the arrow marker only (the edges point at it); the nodes' `node-ID` ids
  // could collide with the page's own.
  const SVG_ALLOWED = new Map([
    ['svg', ['class', 'viewBox', 'width', 'height', 'role', 'aria-label']],
    ['defs', []],
    ['marker', ['id', 'viewBox', 'refX', 'refY', 'markerWidth', 'markerHeight', 'markerUnits', 'orient']],
    ['g', ['class', 'data-node-id', 'data-node-type', 'data-executor', 'transform', 'tabindex']],
    ['path', ['class', 'd', 'data-from', 'data-to', 'marker-end']],
    ['rect', ['class', 'x', 'y', 'width', 'height', 'rx', 'ry']],
    ['text', ['class', 'x', 'y', 'text-anchor']],
    ['title', []],
  ].map(([tag, attrs]) => [tag, new Set(attrs)]));
  const SVG_TEXT = new Set(['text', 'title']);
  const SVG_VALUE = {
    id: /^[A-Za-z0-9_-]+$/,
    'marker-end': /^url\(#[A-Za-z0-9_-]+\)$/,
  };

  /** A copy, made in this document, of the allowed part of a parsed SVG; null if `src` is no
   *  SVG root. Comments, processing instructions, unknown elements (with their content),
   *  namespaced attributes (xlink:href) and attributes not listed are left out. */
  function sanitizeSvg(src) {
    const copy = (el) => {
      if (el.namespaceURI !== SVG_NS || !SVG_ALLOWED.has(el.localName)) return null;
      const allowed = SVG_ALLOWED.get(el.localName);
      const out = document.createElementNS(SVG_NS, el.localName);
      for (const a of Array.from(el.attributes)) {
        if (a.namespaceURI !== null || !allowed.has(a.localName)) continue;
        const rule = SVG_VALUE[a.localName];
        if (rule && !rule.test(a.value)) continue;
        out.setAttribute(a.localName, a.value);
      }
      for (const c of Array.from(el.childNodes)) {
        if (c.nodeType === Node.ELEMENT_NODE) {
          const k = copy(c);
          if (k) out.append(k);
        } else if (c.nodeType === Node.TEXT_NODE && SVG_TEXT.has(el.localName)) {
          out.append(document.createTextNode(c.data));
        }
      }
      return out;
    };
    return src && src.localName === 'svg' ? copy(src) : null;
  }

  /** Caps the drawing's height by the size of its view box, so small DAGs are not blown up. */
  function fitGraph(svg) {
    const vb = (svg.getAttribute('viewBox') || '').split(/[\s,]+/).map(Number);
    if (vb.length === 4 && vb.every((n) => !Number.isNaN(n))) {
      svg.dataset.width = String(vb[2]);
      svg.dataset.height = String(vb[3]);
      // Sizes through the CSSOM (allowed by the policy, unlike style attributes).
      // Small DAGs are drawn a little larger than 1:1; big ones scroll rather than shrink
      // below 80 % (the labels stay readable).
      svg.style.maxWidth = `${Math.max(vb[2] * 1.25, 200)}px`;
      svg.style.maxHeight = `${Math.max(vb[3] * 1.25, 80)}px`;
      svg.style.minWidth = `${Math.round(vb[2] * 0.8)}px`;
    }
  }

  function graphCard(title, svgPromise, onNode, extra) {
    const holder = h('div', { class: 'dag-holder', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Drawing the DAG…'));
    svgPromise.then((svg) => {
      clear(holder).append(svg);
      holder.removeAttribute('aria-busy');
      if (onNode) {
        for (const g of $$('g.node', svg)) {
          const id = g.getAttribute('data-node-id');
          g.addEventListener('click', () => onNode(id));
          g.addEventListener('keydown', (ev) => {
            if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); onNode(id); }
          });
        }
      }
    }, (err) => {
      clear(holder).append(problemView(err));
      holder.removeAttribute('aria-busy');
    });
    return h('section', { class: 'card dag-card', 'aria-label': title },
      h('div', { class: 'card-head' }, h('h2', {}, title), extra || null), holder);
  }

  function legend() {
    const shown = ['pending', 'running', 'retrying', 'waiting_approval', 'completed', 'failed', 'skipped', 'cancelled'];
    return h('ul', { class: 'legend', 'aria-label': 'Status colours' },
      shown.map((s) => h('li', {}, h('span', { class: `swatch status-${s}`, 'aria-hidden': 'true' }), STATUS_LABEL[s])));
  }

  // ---------------------------------------------------------------- views

  let current = null; // the view being shown: {dispose()}

  function route() {
    const raw = location.hash.replace(/^#/, '') || '/';
    const [path, query] = raw.split('?');
    const params = new URLSearchParams(query || '');
    let parts = null; // null: the address cannot be read (a malformed %-escape)
    try { parts = path.split('/').filter(Boolean).map(decodeURIComponent); } catch (_) { /* stays null */ }
    return { parts, params, raw };
  }

  function notFound(view, detail) {
    document.title = 'Not found · Maestro';
    view.append(h('section', { class: 'card', id: 'not-found' }, h('h1', {}, 'Nothing here'),
      detail ? h('p', {}, detail) : null,
      h('p', {}, h('a', { href: '#/' }, 'Back to the workflows'))));
  }

  function setNav(which) {
    for (const a of $$('.topnav a')) {
      if (a.dataset.nav === which) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
  }

  function setLive(text, kind) {
    const el = $('#live');
    el.textContent = text || '';
    el.className = `live ${kind || ''}`;
  }

  async function render() {
    if (current && current.dispose) current.dispose();
    current = null;
    setLive('');
    const view = $('#view');
    clear(view);
    const ctx = { disposed: false, cleanups: [] };
    current = {
      dispose() {
        ctx.disposed = true;
        for (const f of ctx.cleanups) { try { f(); } catch (_) { /* already gone */ } }
      },
    };
    try {
      const { parts, params, raw } = route();
      if (!parts) { setNav(''); notFound(view, `The address “#${raw}” is not valid.`); }
      else if (parts.length === 0) { setNav('workflows'); await listView(view, ctx); }
      else if (parts[0] === 'new') { setNav('new'); newView(view, ctx); }
      else if (parts[0] === 'runs' && parts.length === 1) { setNav('runs'); await runsView(view, ctx); }
      else if (parts[0] === 'workflows' && parts[1]) { setNav('workflows'); await workflowView(view, ctx, parts[1], params.get('version')); }
      else if (parts[0] === 'runs' && parts[1]) { setNav('runs'); await runView(view, ctx, parts[1]); }
      else { setNav(''); notFound(view); }
    } catch (err) {
      if (ctx.disposed) return;
      view.append(h('section', { class: 'card error-card' }, problemView(err),
        h('p', {}, h('a', { href: '#/' }, 'Back to the workflows'))));
    }
  }

  function pageHead(title, subtitle, actions) {
    return h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, title), subtitle ? h('p', { class: 'subtitle' }, subtitle) : null),
      actions ? h('div', { class: 'actions' }, actions) : null);
  }

  function runsTable(runs, withWorkflow) {
    if (!runs.length) return h('p', { class: 'muted empty' }, 'No runs yet.');
    return h('table', { class: 'table runs-table' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Run'),
        withWorkflow ? h('th', { scope: 'col' }, 'Workflow') : null,
        h('th', { scope: 'col' }, 'Version'),
        h('th', { scope: 'col' }, 'Status'),
        h('th', { scope: 'col' }, 'Started'),
        h('th', { scope: 'col' }, 'Duration'))),
      h('tbody', {}, runs.map((r) => h('tr', { 'data-run-id': r.run_id },
        h('td', {}, h('a', { href: `#/runs/${enc(r.run_id)}`, title: r.run_id }, h('code', {}, shortId(r.run_id)))),
        withWorkflow ? h('td', {}, h('a', { href: `#/workflows/${enc(r.workflow_id)}` }, r.workflow_id)) : null,
        h('td', {}, `v${r.version}`),
        h('td', {}, statusBadge(r.status)),
        h('td', {}, fmtTime(r.started_at || r.created_at)),
        h('td', {}, r.started_at ? fmtDuration(between(r.started_at, r.finished_at)) : '—')))));
  }

  // #/ : workflows and recent runs
  async function listView(view, ctx) {
    document.title = 'Workflows · Maestro';
    const [wfs, runs] = await Promise.all([
      api('GET', 'workflows?limit=200'),
      api('GET', 'runs?limit=10'),
    ]);
    if (ctx.disposed) return;
    const list = wfs.workflows || [];
    view.append(pageHead('Workflows', `${list.length} workflow${list.length === 1 ? '' : 's'} on this server`,
      h('a', { class: 'button primary', href: '#/new' }, '+ New workflow')));
    const table = list.length ? h('table', { class: 'table workflows-table' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Workflow'),
        h('th', { scope: 'col' }, 'Id'),
        h('th', { scope: 'col' }, 'Latest version'),
        h('th', { scope: 'col' }, 'Nodes'),
        h('th', { scope: 'col' }, 'Updated'))),
      h('tbody', {}, list.map((w) => h('tr', { 'data-workflow-id': w.workflow_id },
        h('td', {}, h('a', { href: `#/workflows/${enc(w.workflow_id)}` }, w.name || w.workflow_id),
          w.description ? h('div', { class: 'muted small' }, w.description) : null),
        h('td', {}, h('code', {}, w.workflow_id)),
        h('td', {}, h('span', { class: 'pill' }, `v${w.version}`)),
        h('td', {}, String(w.nodes ?? '')),
        h('td', {}, fmtTime(w.created_at))))))
      : h('p', { class: 'muted empty' }, 'No workflows yet. ', h('a', { href: '#/new' }, 'Create one.'));
    view.append(h('section', { class: 'card' }, table));
    view.append(h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', {}, 'Recent runs'), h('a', { href: '#/runs' }, 'All runs')),
      runsTable(runs.runs || [], true)));
  }

  // #/runs : recent runs of every workflow
  async function runsView(view, ctx) {
    document.title = 'Runs · Maestro';
    const runs = await api('GET', 'runs?limit=100');
    if (ctx.disposed) return;
    view.append(pageHead('Runs', 'The 100 most recent runs, newest first'));
    view.append(h('section', { class: 'card' }, runsTable(runs.runs || [], true)));
  }

  const EXAMPLE = {
    id: 'hello_pipeline',
    name: 'Hello pipeline',
    description: 'Extract, two transforms in parallel, then load',
    nodes: [
      { id: 'extract', executor: 'sleep', config: { duration_ms: 500 } },
      { id: 'clean', executor: 'sleep', config: { duration_ms: 800 }, depends_on: ['extract'] },
      { id: 'enrich', executor: 'sleep', config: { duration_ms: 600 }, depends_on: ['extract'] },
      { id: 'load', executor: 'noop', depends_on: ['clean', 'enrich'] },
    ],
  };

  // #/new : a new workflow (or a new version of one) from JSON
  function newView(view) {
    document.title = 'New workflow · Maestro';
    view.append(pageHead('New workflow', 'Paste a workflow definition (JSON). Submitting an existing id with other content creates a new version.'));
    const area = h('textarea', { id: 'definition', class: 'code-input', rows: 16, spellcheck: 'false', 'aria-describedby': 'definition-help' });
    area.value = pretty(EXAMPLE);
    const result = h('div', { id: 'definition-result', 'aria-live': 'polite' });
    const parse = () => {
      try { return JSON.parse(area.value); } catch (e) {
        clear(result).append(h('div', { class: 'problem-box' }, problemView(new ApiError(0, { title: 'This is not valid JSON', detail: e.message, code: 'invalid_json' }))));
        return undefined;
      }
    };
    const validate = h('button', { type: 'button', class: 'button' }, 'Validate');
    const create = h('button', { type: 'submit', class: 'button primary' }, 'Create workflow');
    validate.addEventListener('click', async () => {
      const def = parse();
      if (def === undefined) return;
      validate.disabled = true;
      try {
        const r = await api('POST', 'workflows/validate', def);
        clear(result).append(h('div', { class: 'ok-box' }, h('strong', {}, 'Valid. '),
          `${r.nodes} node${r.nodes === 1 ? '' : 's'} in ${r.levels.length} level${r.levels.length === 1 ? '' : 's'}: `,
          r.levels.map((l) => `[${l.join(', ')}]`).join(' → ')));
      } catch (err) {
        clear(result).append(h('div', { class: 'problem-box' }, problemView(err)));
      } finally { validate.disabled = false; }
    });
    const form = h('form', { class: 'card', id: 'new-workflow-form' },
      h('label', { for: 'definition' }, 'Definition'),
      h('p', { id: 'definition-help', class: 'muted small' },
        'Fields: id, name, description, nodes [{id, name, type, executor, config, depends_on, trigger_rule, condition, retry, timeout_ms}], failure_policy, max_concurrency. ',
        'Built-in executors include noop, sleep ({"duration_ms"}) and fail ({"message"}); a node of type human_review waits for approval.'),
      area,
      h('div', { class: 'actions' }, create, validate),
      result);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const def = parse();
      if (def === undefined) return;
      create.disabled = true;
      try {
        const r = await api('POST', 'workflows', def);
        flash(r.created ? `Workflow ${r.workflow_id} saved as version ${r.version}.` : `Workflow ${r.workflow_id} is unchanged (version ${r.version}).`, 'info');
        location.hash = `#/workflows/${enc(r.workflow_id)}`;
      } catch (err) {
        clear(result).append(h('div', { class: 'problem-box' }, problemView(err)));
        result.scrollIntoView({ block: 'nearest' });
      } finally { create.disabled = false; }
    });
    view.append(form);
    area.focus();
  }

  /** The nodes of a definition; with `statusOf` (the run page) the status comes second and the
   *  name (shown in the node panel) is left out, so the table fits beside the event log. */
  function nodeTable(def, onNode, statusOf) {
    const nodes = def.nodes || [];
    return h('table', { class: 'table nodes-table' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Node'),
        statusOf ? h('th', { scope: 'col' }, 'Status') : h('th', { scope: 'col' }, 'Name'),
        h('th', { scope: 'col' }, 'Type'),
        h('th', { scope: 'col' }, 'Executor'),
        h('th', { scope: 'col' }, 'Depends on'))),
      h('tbody', {}, nodes.map((n) => h('tr', { 'data-node-id': n.id },
        h('td', {}, onNode
          ? h('button', { type: 'button', class: 'linklike', onclick: () => onNode(n.id) }, h('code', {}, n.id))
          : h('code', {}, n.id)),
        statusOf ? h('td', { class: 'node-status-cell' }, statusBadge(statusOf(n.id))) : h('td', {}, n.name || n.id),
        h('td', {}, h('span', { class: `pill type-${n.type || 'custom'}` }, n.type || 'custom')),
        h('td', {}, n.executor ? h('code', {}, n.executor) : h('span', { class: 'muted' }, '—')),
        h('td', {}, (n.depends_on && n.depends_on.length) ? n.depends_on.map((d, i) => [i ? ', ' : '', h('code', {}, d)]) : h('span', { class: 'muted' }, 'none'))))));
  }

  // #/workflows/ID : the DAG, its nodes, versions, runs, and starting a run
  async function workflowView(view, ctx, id, version) {
    const latest = await api('GET', `workflows/${enc(id)}`);
    const rec = version && String(version) !== String(latest.version)
      ? await api('GET', `workflows/${enc(id)}?version=${enc(version)}`)
      : latest;
    if (ctx.disposed) return;
    const def = rec.definition || {};
    document.title = `${def.name || id} · Maestro`;
    const select = h('select', { id: 'version-select', 'aria-label': 'Version' });
    for (let v = latest.version; v >= 1; v -= 1) {
      select.append(h('option', { value: v, selected: v === rec.version }, v === latest.version ? `v${v} (latest)` : `v${v}`));
    }
    select.addEventListener('change', () => {
      const v = Number(select.value);
      location.hash = v === latest.version ? `#/workflows/${enc(id)}` : `#/workflows/${enc(id)}?version=${v}`;
    });
    view.append(pageHead(def.name || id,
      [h('code', {}, id), ' · ', `${(def.nodes || []).length} nodes`, def.description ? ` · ${def.description}` : '',
        ' · ', `created ${fmtTime(rec.created_at)}`],
      [h('label', { for: 'version-select', class: 'inline-label' }, 'Version'), select]));

    const inputs = h('textarea', { id: 'run-inputs', class: 'code-input', rows: 6, spellcheck: 'false' });
    inputs.value = '{}';
    const runResult = h('div', { 'aria-live': 'polite' });
    const start = h('button', { type: 'submit', class: 'button primary', id: 'start-run' }, '▶ Start run');
    const startForm = h('form', { class: 'card start-card', id: 'start-run-form' },
      h('h2', {}, 'Start a run'),
      h('label', { for: 'run-inputs' }, 'Inputs (JSON object)'),
      inputs,
      rec.version !== latest.version
        ? h('p', { class: 'muted small' }, `Runs start on the latest version, v${latest.version}.`)
        : null,
      h('div', { class: 'actions' }, start),
      runResult);
    startForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      let value;
      try { value = JSON.parse(inputs.value || '{}'); } catch (e) {
        clear(runResult).append(h('div', { class: 'problem-box' }, problemView(new ApiError(0, { title: 'The inputs are not valid JSON', detail: e.message, code: 'invalid_json' }))));
        return;
      }
      start.disabled = true;
      try {
        const r = await api('POST', `workflows/${enc(id)}/runs`, { inputs: value });
        location.hash = `#/runs/${enc(r.run_id)}`;
      } catch (err) {
        clear(runResult).append(h('div', { class: 'problem-box' }, problemView(err)));
      } finally { start.disabled = false; }
    });

    const runsBox = h('div', {}, h('p', { class: 'muted' }, 'Loading runs…'));
    const onNode = (nodeId) => {
      const row = $(`.nodes-table tr[data-node-id="${CSS.escape(nodeId)}"]`);
      if (row) {
        row.classList.add('flash-row');
        row.scrollIntoView({ block: 'center', behavior: 'smooth' });
        setTimeout(() => row.classList.remove('flash-row'), 1500);
        const b = $('button', row);
        if (b) b.focus({ preventScroll: true });
      }
    };
    const graph = graphCard('DAG', loadGraph(id, rec.version), onNode,
      h('span', { class: 'muted small' }, 'Tab to a node and press Enter to find it in the table'));
    view.append(h('div', { class: 'grid-main' }, graph,
      h('div', { class: 'side' }, startForm,
        h('section', { class: 'card' }, h('h2', {}, 'Recent runs'), runsBox))));
    view.append(h('section', { class: 'card' }, h('h2', {}, `Nodes (v${rec.version})`), nodeTable(def, (n) => {
      const g = $(`g.node[data-node-id="${CSS.escape(n)}"]`);
      if (g) { g.focus(); g.classList.add('highlight'); setTimeout(() => g.classList.remove('highlight'), 1500); }
    })));
    try {
      const runs = await api('GET', `runs?workflow_id=${enc(id)}&limit=15`);
      if (!ctx.disposed) clear(runsBox).append(runsTable(runs.runs || [], false));
    } catch (err) {
      if (!ctx.disposed) clear(runsBox).append(problemView(err));
    }
  }

  /** The event log keeps this many rows; older ones are dropped (and counted). */
  const LOG_MAX = 1000;

  /** The colour of each event type in the log. */
  const LOG_STATUS = new Map(Object.entries({
    node_started: 'running', node_completed: 'completed', node_failed: 'failed', node_retry: 'retrying',
    node_skipped: 'skipped', node_waiting_approval: 'waiting_approval', workflow_completed: 'completed',
    workflow_failed: 'failed', workflow_cancelled: 'cancelled', workflow_started: 'running',
    workflow_paused: 'pending', workflow_resumed: 'running',
  }));

  // #/runs/RUN_ID : live run
  //
  // Events change the state (`st`) at once and mark what they touched; the page is painted at
  // most once per animation frame, and only the nodes, rows and edges whose state changed are
  // touched, so a history of thousands of events or a fast stream costs one paint per frame.
  async function runView(view, ctx, runId) {
    const st = {
      run: await api('GET', `runs/${enc(runId)}`),
      nodes: new Map(), // id -> {status, attempts, max_attempts, started_at, finished_at, output, error, reason}
      stateSeq: 0, // the seq the node states reflect
      logSeq: 0, // the last event in the log
      def: null,
      defById: new Map(), // id -> the node's definition
      selected: null,
      ws: null,
      wsOpen: false,
      retries: 0,
      svg: null,
    };
    // What the next frame repaints: every node, or the nodes in `nodes`; the run's header.
    const dirty = { all: true, nodes: new Set(), run: true };
    const pendingLog = []; // events not yet in the log
    let logDropped = 0; // events left out of the log (the oldest)
    let frame = 0;
    let historyLoading = false; // the log is built once the history is in, from its last rows
    // The drawn DAG, indexed once: id -> its <g>, and the edges out of and into each node.
    const gOf = new Map();
    const edgesOf = new Map();
    const statusCells = new Map(); // id -> the node table's status cell
    let approvalsKey = null;
    let runErrorKey = null;
    let refreshTimer = null;
    if (ctx.disposed) return;
    adoptSnapshot(st, st.run, true);
    document.title = `Run ${shortId(runId)} · Maestro`;

    const defPromise = api('GET', `workflows/${enc(st.run.workflow_id)}?version=${enc(st.run.version)}`)
      .then((r) => r.definition).catch(() => null);
    const svgPromise = loadGraph(st.run.workflow_id, st.run.version);

    // Header and controls.
    const statusSlot = h('span', { id: 'run-status' });
    const progressBar = h('div', { class: 'progress-bar' });
    const progressText = h('span', { id: 'run-progress' });
    const progress = h('div', { class: 'progress', role: 'progressbar', 'aria-label': 'Progress', 'aria-valuemin': 0, 'aria-valuemax': 100 }, progressBar);
    const timing = h('span', { id: 'run-timing', class: 'muted' });
    const buttons = {
      cancel: h('button', { type: 'button', class: 'button danger', id: 'run-cancel' }, '■ Cancel'),
      pause: h('button', { type: 'button', class: 'button', id: 'run-pause' }, '❚❚ Pause'),
      resume: h('button', { type: 'button', class: 'button', id: 'run-resume' }, '▶ Resume'),
      retry: h('button', { type: 'button', class: 'button', id: 'run-retry' }, '↻ Retry'),
    };
    for (const [action, b] of Object.entries(buttons)) {
      b.addEventListener('click', () => control(action));
    }
    const runError = h('div', { id: 'run-error' });
    const approvals = h('div', { id: 'approvals', 'aria-live': 'polite' });
    view.append(h('div', { class: 'page-head run-head' },
      h('div', {},
        h('p', { class: 'crumbs' }, h('a', { href: `#/workflows/${enc(st.run.workflow_id)}` }, st.run.workflow_id), ` · v${st.run.version} · run`),
        h('h1', {}, h('code', { title: runId }, runId), ' ', statusSlot),
        h('div', { class: 'run-meta' }, progress, progressText, timing)),
      h('div', { class: 'actions run-actions' }, Object.values(buttons))));
    view.append(runError, approvals);

    // The DAG and the node panel.
    const panel = h('aside', { class: 'card node-panel', id: 'node-panel', 'aria-live': 'polite', tabindex: '-1' });
    const graph = graphCard('DAG', svgPromise, (id) => select(id), legend());
    view.append(h('div', { class: 'grid-run' }, graph, panel));

    // The event log and the node table.
    const log = h('ol', { class: 'event-log', id: 'event-log', 'aria-label': 'Event log' });
    const logCount = h('span', { class: 'muted small', id: 'event-log-count' });
    const nodesBox = h('div', { class: 'nodes-box' });
    view.append(h('div', { class: 'grid-bottom' },
      h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Event log'), logCount), log),
      h('section', { class: 'card' }, h('h2', {}, 'Nodes'), nodesBox)));
    ctx.cleanups.push(() => { if (frame) cancelAnimationFrame(frame); frame = 0; });
    // The log follows new events while it is scrolled to its end (the user scrolling up stops
    // that, scrolling back down resumes it), also when its rows wrap anew in another width.
    let followLog = true;
    log.addEventListener('scroll', () => {
      followLog = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    }, { passive: true });
    if (typeof ResizeObserver === 'function') {
      const resized = new ResizeObserver(() => { if (followLog) log.scrollTop = log.scrollHeight; });
      resized.observe(log);
      ctx.cleanups.push(() => resized.disconnect());
    }

    st.def = await defPromise;
    if (ctx.disposed) return;
    try { st.svg = await svgPromise; } catch (_) { st.svg = null; }
    if (ctx.disposed) return;
    for (const n of (st.def && st.def.nodes) || []) st.defById.set(n.id, n);
    indexGraph();
    buildNodeTable();
    if (!st.selected) {
      // A run that waits for someone, or failed, opens on the node that needs attention.
      for (const [id, n] of st.nodes) {
        if (['waiting_approval', 'failed'].includes(n.status)) { st.selected = id; break; }
      }
      renderPanel(st.selected);
    }
    invalidate();
    flush();

    // The history (the log), then the live socket from where the history ends.
    await loadHistory();
    if (ctx.disposed) return;
    connect();

    const tick = setInterval(() => { if (!TERMINAL_RUN.includes(st.run.status)) { paintTiming(); if (st.selected) renderPanel(st.selected); } }, 1000);
    ctx.cleanups.push(() => clearInterval(tick), () => clearTimeout(refreshTimer));
    ctx.cleanups.push(() => { if (st.ws) { st.ws.onclose = null; st.ws.close(1000); } });

    // ------------------------------------------------------------ run state

    function adoptSnapshot(s, run, force) {
      const seq = run.last_seq || 0;
      s.run = run;
      dirty.run = true;
      if (!force && seq < s.stateSeq) return;
      s.stateSeq = Math.max(seq, s.stateSeq);
      s.nodes = new Map();
      // JSON.parse makes "__proto__" an own key like any other; Object.entries lists it.
      for (const [id, n] of Object.entries(run.nodes || {})) s.nodes.set(id, Object.assign({}, n));
      dirty.all = true;
    }

    async function refresh() {
      try {
        const run = await api('GET', `runs/${enc(runId)}`);
        if (ctx.disposed) return;
        adoptSnapshot(st, run, false);
        schedulePaint();
      } catch (err) {
        if (!ctx.disposed && err.status !== 401) flash(err);
      }
    }

    function refreshSoon() {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(refresh, 150);
    }

    /** Applies one event to the node states (once) and queues it for the log (once); the
     *  page is painted on the next frame. */
    function onEvent(e) {
      if (!e || typeof e.seq !== 'number') return;
      if (e.seq > st.logSeq) {
        st.logSeq = e.seq;
        pendingLog.push(e);
        // A hidden tab gets no frames: keep the queue bounded all the same.
        if (pendingLog.length > 2 * LOG_MAX) logDropped += pendingLog.splice(0, pendingLog.length - LOG_MAX).length;
      }
      schedulePaint();
      if (e.seq <= st.stateSeq) return;
      st.stateSeq = e.seq;
      const d = e.data || {};
      let n = null;
      if (typeof e.node_id === 'string') {
        n = st.nodes.get(e.node_id);
        if (!n) { n = { status: 'pending', attempts: 0 }; st.nodes.set(e.node_id, n); }
        dirty.nodes.add(e.node_id);
      }
      switch (e.type) {
        case 'node_started':
          if (!n) break;
          n.status = 'running';
          n.attempts = d.attempt || (n.attempts || 0) + 1;
          if (d.max_attempts) n.max_attempts = d.max_attempts;
          if (!n.started_at || n.attempts === 1) n.started_at = e.timestamp;
          n.finished_at = null; n.error = null;
          break;
        case 'node_completed':
          if (!n) break;
          n.status = 'completed'; n.finished_at = e.timestamp;
          if ('output' in d) n.output = d.output;
          n.error = null;
          break;
        case 'node_failed':
          if (!n) break;
          n.status = 'failed'; n.finished_at = e.timestamp; n.error = d.error || d.reason || n.error;
          break;
        case 'node_retry':
          if (!n) break;
          n.status = 'retrying'; n.error = d.error || n.error;
          if (d.delay_ms !== undefined) n.retry_in_ms = d.delay_ms;
          break;
        case 'node_skipped':
          if (!n) break;
          n.status = 'skipped'; n.reason = d.reason || n.reason; n.finished_at = e.timestamp;
          break;
        case 'node_waiting_approval':
          if (!n) break;
          n.status = 'waiting_approval';
          if (!n.started_at) n.started_at = e.timestamp;
          break;
        case 'workflow_started':
          st.run.status = 'running';
          if (!st.run.started_at) st.run.started_at = e.timestamp;
          dirty.run = true;
          refreshSoon();
          break;
        case 'workflow_paused': st.run.status = 'paused'; dirty.run = true; break;
        case 'workflow_resumed': st.run.status = 'running'; dirty.run = true; break;
        case 'workflow_completed':
        case 'workflow_failed':
        case 'workflow_cancelled':
          st.run.status = e.type.slice('workflow_'.length);
          st.run.finished_at = e.timestamp;
          dirty.run = true;
          if (e.type === 'workflow_cancelled') {
            for (const [id, x] of st.nodes) {
              if (!TERMINAL_NODE.includes(x.status)) { x.status = 'cancelled'; dirty.nodes.add(id); }
            }
          }
          refreshSoon();
          break;
        default: break;
      }
    }

    async function loadHistory() {
      historyLoading = true;
      try { await loadHistoryPages(); } finally { historyLoading = false; schedulePaint(); }
    }

    async function loadHistoryPages() {
      let after = 0;
      for (let page = 0; page < 100; page += 1) {
        let r;
        try {
          r = await api('GET', `runs/${enc(runId)}/events?after=${after}&limit=1000`);
        } catch (err) {
          if (!ctx.disposed) flash(err);
          return;
        }
        if (ctx.disposed) return;
        const events = r.events || [];
        for (const e of events) onEvent(e);
        if (!events.length || r.next_after === null || r.next_after === undefined || r.next_after <= after) return;
        after = r.next_after;
        if (events.length < 1000) return;
      }
    }

    // ------------------------------------------------------------ live socket

    function connect() {
      if (ctx.disposed) return;
      const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
      const url = `${scheme}://${location.host}${API}/runs/${enc(runId)}/ws?after=${st.logSeq}`;
      const protocols = ['maestro'];
      if (memoryToken) protocols.push(`maestro.bearer.${base64url(memoryToken)}`);
      let ws;
      try { ws = new WebSocket(url, protocols); } catch (err) {
        setLive('live events unavailable', 'bad');
        return;
      }
      st.ws = ws;
      setLive('connecting…', 'wait');
      ws.onopen = () => {
        st.wsOpen = true;
        st.retries = 0;
        setLive('● live', 'good');
      };
      ws.onmessage = (m) => {
        let e;
        try { e = JSON.parse(m.data); } catch (_) { return; }
        if (!e || e.type === 'pong') return;
        onEvent(e);
      };
      ws.onclose = (c) => {
        st.wsOpen = false;
        st.ws = null;
        if (ctx.disposed) return;
        if (c.code === 1000 && TERMINAL_RUN.includes(st.run.status)) {
          setLive('run finished', 'done');
          return;
        }
        // Dropped: reconnect from the last event seen, checking the token on the way (a
        // refused WebSocket tells the page nothing, a 401 on a fetch opens the dialog).
        st.retries += 1;
        const delay = Math.min(10000, 500 * 2 ** Math.min(st.retries, 5));
        setLive(`reconnecting in ${Math.round(delay / 1000)} s…`, 'wait');
        setTimeout(async () => {
          if (ctx.disposed) return;
          await refresh();
          if (!ctx.disposed && !st.ws) connect();
        }, delay);
      };
    }

    function ensureLive() {
      if (!st.ws && !ctx.disposed) connect();
    }

    // ------------------------------------------------------------ actions

    async function control(action) {
      const b = buttons[action];
      b.disabled = true;
      try {
        const r = await api('POST', `runs/${enc(runId)}/${action}`, {});
        if (r && r.status) st.run.status = r.status;
        const done = { cancel: 'cancelled', pause: 'paused', resume: 'resumed', retry: 'restarted' }[action];
        flash(`Run ${done}.`, 'info');
        invalidateRun();
        if (action === 'retry' || action === 'resume') ensureLive();
        refreshSoon();
      } catch (err) {
        flash(err);
        invalidateRun();
      }
    }

    async function review(nodeId, decision, reason) {
      try {
        const body = decision === 'reject' && reason ? { reason } : {};
        await api('POST', `runs/${enc(runId)}/nodes/${enc(nodeId)}/${decision}`, body);
        flash(`Node ${nodeId} ${decision === 'approve' ? 'approved' : 'rejected'}.`, 'info');
        refreshSoon();
      } catch (err) {
        flash(err);
      }
    }

    // ------------------------------------------------------------ painting

    function nodeStatus(id) {
      const n = st.nodes.get(id);
      return (n && n.status) || 'pending';
    }

    /** Everything is repainted on the next frame. */
    function invalidate() {
      dirty.all = true;
      dirty.run = true;
      schedulePaint();
    }

    /** The run's header, buttons and panel are repainted on the next frame. */
    function invalidateRun() {
      dirty.run = true;
      schedulePaint();
    }

    function schedulePaint() {
      if (!frame && !ctx.disposed) frame = requestAnimationFrame(flush);
    }

    /** Paints what changed since the last frame. */
    function flush() {
      if (frame) cancelAnimationFrame(frame);
      frame = 0;
      if (ctx.disposed) return;
      const all = dirty.all;
      const ids = dirty.nodes;
      const runChanged = dirty.run;
      dirty.all = false;
      dirty.nodes = new Set();
      dirty.run = false;
      if (all || ids.size || runChanged) {
        paintHeader();
        paintGraph(all ? null : ids);
        paintNodeTable(all ? null : ids);
        if (st.selected && (all || runChanged || ids.has(st.selected))) renderPanel(st.selected);
      }
      if (!historyLoading) flushLog();
    }

    function paintHeader() {
      const run = st.run;
      const s = run.status;
      if (statusSlot.dataset.status !== s) {
        statusSlot.dataset.status = s;
        clear(statusSlot).append(statusBadge(s));
      }
      // One pass over the nodes for the counts and the nodes waiting for approval.
      const counts = new Map();
      const waiting = [];
      let done = 0;
      let total = 0;
      const tally = (id) => {
        const x = nodeStatus(id);
        counts.set(x, (counts.get(x) || 0) + 1);
        if (TERMINAL_NODE.includes(x)) done += 1;
        else if (x === 'waiting_approval') waiting.push(id);
        total += 1;
      };
      if (st.def) for (const n of st.def.nodes) tally(n.id);
      else for (const id of st.nodes.keys()) tally(id);
      const pct = total ? Math.round((done / total) * 100) : 0;
      progressBar.style.width = `${pct}%`;
      progressBar.className = `progress-bar run-${s}`;
      progress.setAttribute('aria-valuenow', String(pct));
      const extra = [];
      for (const x of ['running', 'waiting_approval', 'failed', 'skipped', 'cancelled']) {
        const c = counts.get(x);
        if (c) extra.push(`${c} ${STATUS_LABEL[x]}`);
      }
      progressText.textContent = `${counts.get('completed') || 0}/${total} completed${extra.length ? ` · ${extra.join(' · ')}` : ''}`;
      paintTiming();
      buttons.cancel.disabled = !['pending', 'running', 'paused'].includes(s);
      buttons.pause.disabled = s !== 'running';
      buttons.resume.disabled = s !== 'paused';
      buttons.retry.disabled = !['failed', 'cancelled'].includes(s);
      const errKey = run.error && ['failed', 'cancelled'].includes(s) ? `${s}\n${run.error}` : '';
      if (errKey !== runErrorKey) {
        runErrorKey = errKey;
        clear(runError);
        if (errKey) runError.append(h('div', { class: `run-error-box ${s}` }, h('strong', {}, `Run ${s}: `), String(run.error)));
      }
      paintApprovals(TERMINAL_RUN.includes(s) ? [] : waiting);
    }

    function paintTiming() {
      const r = st.run;
      const started = r.started_at ? `started ${fmtTime(r.started_at)}` : `created ${fmtTime(r.created_at)}`;
      const dur = r.started_at ? ` · ${TERMINAL_RUN.includes(r.status) ? 'took' : 'running for'} ${fmtDuration(between(r.started_at, TERMINAL_RUN.includes(r.status) ? r.finished_at : null))}` : '';
      timing.textContent = `${started}${dur}`;
    }

    /** Indexes the drawn DAG once: each node's <g>, and the edges touching each node. */
    function indexGraph() {
      if (!st.svg) return;
      for (const g of $$('g.node', st.svg)) gOf.set(g.getAttribute('data-node-id'), g);
      for (const p of $$('.edge', st.svg)) {
        for (const end of [p.getAttribute('data-from'), p.getAttribute('data-to')]) {
          if (!edgesOf.has(end)) edgesOf.set(end, []);
          edgesOf.get(end).push(p);
        }
      }
    }

    /** Recolours the nodes in `ids` (all with null) and the edges touching them. */
    function paintGraph(ids) {
      if (!st.svg) return;
      const which = ids ? Array.from(ids) : Array.from(gOf.keys());
      const edges = new Set();
      for (const id of which) {
        const g = gOf.get(id);
        if (g) paintNode(g, id);
        for (const p of edgesOf.get(id) || []) edges.add(p);
      }
      for (const p of edges) {
        const from = nodeStatus(p.getAttribute('data-from'));
        const to = nodeStatus(p.getAttribute('data-to'));
        p.classList.toggle('edge-done', from === 'completed');
        p.classList.toggle('edge-active', from === 'completed' && (to === 'running' || to === 'retrying'));
        p.classList.toggle('edge-dead', ['failed', 'skipped', 'cancelled'].includes(from));
      }
    }

    function paintNode(g, id) {
      const s = nodeStatus(id);
      const n = st.nodes.get(id);
      const attempts = n && n.attempts > 1 ? n.attempts : 1;
      g.classList.toggle('selected', id === st.selected);
      if (g.dataset.status === s && g.dataset.attempts === String(attempts)) return;
      for (const c of Array.from(g.classList)) if (c.startsWith('status-')) g.classList.remove(c);
      g.classList.add(`status-${s}`);
      g.dataset.status = s;
      g.dataset.attempts = String(attempts);
      g.setAttribute('aria-label', `node ${id}: ${STATUS_LABEL[s] || s}`);
      const title = $('title', g);
      if (title) {
        if (title.dataset.base === undefined) title.dataset.base = title.textContent;
        title.textContent = `${title.dataset.base}\n${STATUS_LABEL[s] || s}${attempts > 1 ? ` (attempt ${attempts})` : ''}`;
      }
    }

    function paintApprovals(waiting) {
      const key = waiting.join('\n');
      if (key === approvalsKey) return;
      approvalsKey = key;
      clear(approvals);
      if (!waiting.length) return;
      approvals.append(h('div', { class: 'approval-box' },
        h('strong', {}, 'Waiting for approval: '),
        waiting.map((id, i) => [i ? ', ' : '', h('button', { type: 'button', class: 'linklike', onclick: () => select(id) }, h('code', {}, id))]),
        ' — open a node to approve or reject it.'));
    }

    /** The node table, built once; its status cells are updated in place. */
    function buildNodeTable() {
      if (!st.def) { clear(nodesBox).append(h('p', { class: 'muted' }, 'The definition of this run is not available.')); return; }
      const table = nodeTable(st.def, select, nodeStatus);
      for (const cell of $$('td.node-status-cell', table)) statusCells.set(cell.parentElement.dataset.nodeId, cell);
      clear(nodesBox).append(table);
    }

    function paintNodeTable(ids) {
      for (const id of ids || statusCells.keys()) {
        const cell = statusCells.get(id);
        if (!cell) continue;
        const s = nodeStatus(id);
        const badge = cell.firstElementChild;
        if (badge && badge.dataset.status === s) continue;
        clear(cell).append(statusBadge(s));
      }
    }

    function select(id) {
      const before = st.selected;
      st.selected = id;
      for (const x of [before, id]) { const g = gOf.get(x); if (g) g.classList.toggle('selected', x === st.selected); }
      renderPanel(id);
      panel.focus({ preventScroll: true });
      if (panel.getBoundingClientRect().top < 0 || panel.getBoundingClientRect().top > window.innerHeight - 80) {
        panel.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
      }
    }

    function unselect() {
      const g = gOf.get(st.selected);
      if (g) g.classList.remove('selected');
      st.selected = null;
      renderPanel(null);
    }

    function field(label, value) {
      return [h('dt', {}, label), h('dd', {}, value)];
    }

    function renderPanel(id) {
      const active = document.activeElement;
      const keepFocus = active && panel.contains(active) && active !== panel ? (active.id || null) : null;
      const reasonValue = $('#reject-reason', panel) ? $('#reject-reason', panel).value : '';
      clear(panel);
      if (!id) {
        panel.append(h('h2', {}, 'Node details'),
          h('p', { class: 'muted' }, 'Select a node in the DAG (click it, or Tab to it and press Enter) to see its status, attempts, timings, output and error.'));
        return;
      }
      const n = st.nodes.get(id) || { status: 'pending' };
      const d = st.defById.get(id) || {};
      const status = n.status || 'pending';
      panel.append(h('div', { class: 'card-head' },
        h('h2', {}, h('code', {}, id)),
        h('button', { type: 'button', class: 'button ghost small', 'aria-label': 'Close node details', onclick: unselect }, '×')));
      const attempts = n.attempts ? `${n.attempts}${n.max_attempts ? ` of ${n.max_attempts}` : ''}` : '0';
      panel.append(h('dl', { class: 'facts' },
        field('Status', statusBadge(status)),
        d.name && d.name !== id ? field('Name', d.name) : null,
        field('Type', d.type || 'custom'),
        field('Executor', d.executor ? h('code', {}, d.executor) : '—'),
        field('Attempts', attempts),
        field('Started', fmtTime(n.started_at)),
        field('Finished', fmtTime(n.finished_at)),
        field('Duration', n.started_at ? fmtDuration(between(n.started_at, n.finished_at || (TERMINAL_NODE.includes(status) ? n.started_at : null))) : '—'),
        n.reason ? field('Reason', String(n.reason)) : null));
      if (status === 'waiting_approval' && !TERMINAL_RUN.includes(st.run.status)) {
        const reason = h('input', { id: 'reject-reason', type: 'text', placeholder: 'Reason (optional, for a rejection)', 'aria-label': 'Reason for rejecting' });
        reason.value = reasonValue;
        panel.append(h('div', { class: 'review' },
          h('p', {}, h('strong', {}, 'This node waits for a human review.')),
          h('div', { class: 'actions' },
            h('button', { type: 'button', class: 'button primary', id: 'approve-node', onclick: () => review(id, 'approve') }, '✓ Approve'),
            h('button', { type: 'button', class: 'button danger', id: 'reject-node', onclick: () => review(id, 'reject', reason.value.trim()) }, '✗ Reject')),
          reason));
      }
      if (n.error) panel.append(h('h3', {}, 'Error'), h('pre', { class: 'json error-text' }, typeof n.error === 'string' ? n.error : pretty(n.error)));
      if (n.output !== undefined && n.output !== null) panel.append(h('h3', {}, 'Output'), h('pre', { class: 'json' }, pretty(n.output)));
      if (keepFocus) {
        const el = document.getElementById(keepFocus);
        if (el) el.focus({ preventScroll: true });
      }
    }

    function summary(e) {
      const d = e.data || {};
      const bits = [];
      if (d.attempt) bits.push(`attempt ${d.attempt}${d.max_attempts ? `/${d.max_attempts}` : ''}`);
      if (d.delay_ms !== undefined) bits.push(`next in ${fmtDuration(d.delay_ms)}`);
      if (d.error) bits.push(`error: ${typeof d.error === 'string' ? d.error : JSON.stringify(d.error)}`);
      if (d.reason) bits.push(`reason: ${d.reason}`);
      return bits.join(' · ');
    }

    function logRow(e) {
      const type = String(e.type || '');
      const kind = type.startsWith('workflow_') ? 'run' : 'node';
      const status = LOG_STATUS.get(type) || 'pending';
      const nodeId = typeof e.node_id === 'string' ? e.node_id : null;
      return h('li', { class: `event ${kind}`, 'data-seq': e.seq, 'data-type': type },
        h('span', { class: 'seq' }, `#${e.seq}`),
        h('time', { datetime: e.timestamp }, fmtClock(e.timestamp)),
        h('span', { class: `etype status-${status}` }, type),
        nodeId ? h('button', { type: 'button', class: 'linklike', onclick: () => select(nodeId) }, h('code', {}, nodeId)) : h('span', {}),
        h('span', { class: 'esummary' }, summary(e)));
    }

    /** Appends the queued events to the log, keeping its last LOG_MAX rows. */
    function flushLog() {
      if (!pendingLog.length) return;
      let batch = pendingLog.splice(0, pendingLog.length);
      if (batch.length > LOG_MAX) {
        logDropped += batch.length - LOG_MAX;
        batch = batch.slice(batch.length - LOG_MAX);
      }
      const rows = document.createDocumentFragment();
      for (const e of batch) rows.append(logRow(e));
      log.append(rows);
      while (log.children.length > LOG_MAX) {
        log.firstElementChild.remove();
        logDropped += 1;
      }
      const shown = log.children.length;
      logCount.textContent = logDropped
        ? `the last ${shown.toLocaleString()} of ${(shown + logDropped).toLocaleString()} events (${logDropped.toLocaleString()} older not shown)`
        : `${shown} event${shown === 1 ? '' : 's'}`;
      logCount.dataset.dropped = String(logDropped);
      if (followLog) log.scrollTop = log.scrollHeight;
    }
  }

  // ---------------------------------------------------------------- start

  function start() {
    initTokenDialog();
    window.addEventListener('hashchange', () => { clearFlash(); render(); });
    render();
  }

  // Exposed for tests and the curious: the list of node statuses the graph can show.
  window.maestroDashboard = { statuses: NODE_STATUSES };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
}());
