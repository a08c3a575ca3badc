// app.js: the qsnapd page - VMs, snapshot trees, tasks, schedules and event logs through qsnapd's REST API.
// Everything that came from the server goes into the page as text (textContent, createElement, append of
// strings), never as markup: a snapshot described as <img src=x onerror=...> shows those characters.
// Over TCP every request carries the bearer token the user typed, kept in sessionStorage (this tab) only.

const TOKEN_KEY = 'qsnap.token';
const TASKS_SHOWN = 20;
const EVENTS_SHOWN = 20;
const REFRESH_MS = 20000;

const $ = (id) => document.getElementById(id);

const ui = {
  vm: null,           // the selected domain
  tasks: new Map(),   // id -> the task as last seen
  seq: 0,             // the newest refresh: an older one that ends later does not draw over it
  live: null,         // AbortController of the event stream
  timer: 0,           // periodic refresh
  pending: 0,         // a refresh asked for by an event, shortly
  drawn: new Map(),   // what each part of the page was last drawn from (JSON)
};

// Whether DATA differs from what part WHAT was last drawn from: a refresh that finds nothing new leaves the page
// alone, so a button is not replaced under the pointer of someone about to click it.
function changed(what, data) {
  const key = JSON.stringify(data);
  if (ui.drawn.get(what) === key) return false;
  ui.drawn.set(what, key);
  return true;
}

// ---- building the page ------------------------------------------------------------------------------------

// An element with properties (textContent, type, value, ...: never markup) and children (nodes, or strings,
// which append() inserts as text).
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'data') Object.assign(e.dataset, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c !== undefined && c !== null && c !== false) e.append(c);
  }
  return e;
}

function fmtTime(ms) {
  return ms > 0 ? new Date(ms).toLocaleString() : '\u2014';
}

function fmtDuration(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60000)} min`;
}

// ---- the API ----------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// A path under /api with each name escaped as one segment.
function P(...parts) {
  return '/api/' + parts.map(encodeURIComponent).join('/');
}

function authHeaders() {
  const t = sessionStorage.getItem(TOKEN_KEY);
  return t ? { Authorization: `Bearer ${t}` } : {};
}

// METHOD PATH with BODY (JSON) -> the reply's document; an error reply throws ApiError with the API's message,
// and a 401 brings the token prompt back.
async function api(method, path, body) {
  const headers = { Accept: 'application/json', ...authHeaders() };
  const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', `qsnapd did not answer (${e.message})`);
  }
  const text = await resp.text();
  let doc = null;
  try {
    doc = text ? JSON.parse(text) : null;
  } catch (e) {
    doc = null;
  }
  const message = doc && typeof doc.message === 'string' ? doc.message : `HTTP ${resp.status}`;
  if (resp.status === 401) {
    needToken(message);
    throw new ApiError(401, 'unauthorized', message);
  }
  if (!resp.ok) throw new ApiError(resp.status, (doc && doc.code) || 'http', message);
  return doc;
}

// ---- errors -----------------------------------------------------------------------------------------------

function showError(message) {
  $('error-text').textContent = message;
  $('error').hidden = false;
}

function clearError() {
  $('error').hidden = true;
  $('error-text').textContent = '';
}

// A failure as the API worded it (a 401 shows the token prompt instead).
function report(e) {
  if (e instanceof ApiError && e.status === 401) return;
  showError(e instanceof ApiError ? e.message : `error: ${e.message}`);
}

// ---- the token --------------------------------------------------------------------------------------------

function stopLive() {
  if (ui.live) ui.live.abort();
  ui.live = null;
  clearInterval(ui.timer);
  ui.timer = 0;
}

// Shows the prompt: the server refused the request (no token, a wrong or revoked one). MESSAGE is the API's.
function needToken(message) {
  const had = sessionStorage.getItem(TOKEN_KEY) !== null;
  sessionStorage.removeItem(TOKEN_KEY);
  stopLive();
  const m = $('login-message');
  if (had) {
    m.textContent = `The token was refused: ${message || 'unauthorized'}`;
    m.hidden = false;
  } else if ($('login').hidden) {
    m.hidden = true;
  }
  $('app').hidden = true;
  $('refresh').hidden = true;
  $('signout').hidden = true;
  $('login').hidden = false;
  $('token').focus();
}

// ---- VMs ----------------------------------------------------------------------------------------------------

function renderVms(list) {
  if (!changed('vms', { list, vm: ui.vm })) return;
  const rows = list.map((v) => {
    const preview = v.preview && v.preview.state !== 'none'
      ? `${v.preview.state === 'active' ? 'preview of' : 'interrupted preview of'} ${v.preview.snapshot || ''}` : '';
    const tr = el('tr', { data: { vm: v.name }, class: v.name === ui.vm ? 'selected' : '' },
      el('td', { textContent: v.name }),
      el('td', null,
        el('span', { textContent: v.state ? v.state.replace(/_/g, ' ') : 'busy', data: { field: 'state' } }),
        preview && el('div', { class: 'muted', textContent: preview, data: { field: 'preview' } })),
      el('td', { textContent: v.snapshot_count !== undefined ? String(v.snapshot_count) : '',
        data: { field: 'count' } }),
      el('td', { textContent: v.current_snapshot || '\u2014', data: { field: 'current' } }));
    tr.addEventListener('click', () => selectVm(v.name));
    return tr;
  });
  $('vms').tBodies[0].replaceChildren(...rows);
  $('vms-empty').hidden = list.length > 0;
}

function selectVm(name) {
  if (ui.vm === name) return;
  ui.vm = name;
  history.replaceState(null, '', `#${encodeURIComponent(name)}`);
  for (const tr of $('vms').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.vm === name);
  // another VM's tree must not stay on screen under this one's name
  ui.drawn.clear();
  $('tree').replaceChildren();
  $('schedules').tBodies[0].replaceChildren();
  $('events').tBodies[0].replaceChildren();
  $('vm-title').textContent = name;
  $('vm-info').textContent = '';
  $('vm-panel').hidden = false;
  refreshAll();
}

function renderVm(v) {
  if (!changed('vm', v)) return;
  const disks = (v.disks || []).map((d) => d.target).join(', ');
  const parts = [`state ${v.state.replace(/_/g, ' ')}`];
  if (v.pid) parts.push(`QEMU pid ${v.pid}`);
  if (disks) parts.push(`disks ${disks}`);
  if (v.pending) parts.push(`an unfinished ${v.pending.op} is pending`);
  else if (v.locked) parts.push('an operation is under way');
  $('vm-title').textContent = v.name;
  $('vm-info').textContent = parts.join(' \u00b7 ');
  $('vm-panel').dataset.state = v.state;
  const pv = v.preview || { state: 'none' };
  $('preview-bar').hidden = pv.state === 'none';
  $('preview-name').textContent = pv.state === 'active' ? (pv.snapshot || '') : `${pv.snapshot || ''} (interrupted)`;
}

// ---- the snapshot tree ------------------------------------------------------------------------------------

function badge(text, kind) {
  return el('span', { class: `badge ${kind}`, data: { badge: kind }, textContent: text });
}

function button(label, action, onClick, danger) {
  const b = el('button', { type: 'button', textContent: label, class: danger ? 'danger' : '', data: { action } });
  b.addEventListener('click', onClick);
  return b;
}

function snapNode(s) {
  const point = s.snapshot_type === 'preview';
  const locked = s.snapshot_status === 'locked';
  const actions = point ? null : el('div', { class: 'actions' },
    button('Revert', 'revert', () => doRevert(s)),
    button('Preview', 'preview', () => doPreview(s)),
    s.protected
      ? button('Unprotect', 'unprotect', () => doProtect(s, false))
      : button('Protect', 'protect', () => doProtect(s, true)),
    button('Delete\u2026', 'delete', () => doDelete(s), true));
  if (actions && locked) for (const b of actions.children) b.disabled = true;
  return el('div', { class: s.current ? 'snap current' : 'snap' },
    el('span', { class: 'name', textContent: s.name }),
    s.current && badge('current', 'current'),
    s.snapshot_status === 'in_preview' && badge('in preview', 'in_preview'),
    locked && badge('locked', 'locked'),
    s.protected && badge('protected', 'protected'),
    badge(s.location, 'location'),
    badge(s.persist_memorystate ? 'memory' : 'disks only', 'memory'),
    point && badge('the state kept by the preview', 'point'),
    s.schedule && badge(`schedule ${s.schedule}`, 'schedule'),
    el('time', { class: 'date', dateTime: s.date, textContent: fmtTime(s.creation_time * 1000) }),
    el('span', { class: 'desc', textContent: s.description || '' }),
    actions);
}

// Parents before children without recursion (a chain can be thousands deep); siblings oldest first.
function renderTree(list) {
  if (!changed('tree', list)) return;
  const sorted = [...list].sort((a, b) => a.creation_time - b.creation_time || (a.name < b.name ? -1 : 1));
  const items = new Map();
  for (const s of sorted) items.set(s.name, el('li', { data: { snapshot: s.name } }, snapNode(s)));
  const roots = [];
  for (const s of sorted) {
    const li = items.get(s.name);
    const parent = s.parent !== null ? items.get(s.parent) : undefined;
    if (!parent) {
      roots.push(li);
      continue;
    }
    let ul = parent.lastElementChild;
    if (!ul || ul.tagName !== 'UL') ul = parent.appendChild(el('ul'));
    ul.append(li);
  }
  $('tree').replaceChildren(...roots);
  $('tree-empty').hidden = list.length > 0;
}

// ---- schedules and the event log ----------------------------------------------------------------------------

function keepText(k) {
  const parts = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly']
    .filter((n) => k && k[n] > 0).map((n) => `${n} ${k[n]}`);
  if (k && k.max_age_s > 0) parts.push(`at most ${Math.round(k.max_age_s / 86400)} d old`);
  return parts.length ? parts.join(', ') : 'everything';
}

function renderSchedules(list) {
  if (!changed('schedules', list)) return;
  $('schedules').tBodies[0].replaceChildren(...list.map((s) => el('tr', { data: { schedule: s.name } },
    el('td', { textContent: s.name }),
    el('td', { textContent: s.cron === s.expanded || !s.expanded ? s.cron : `${s.cron} (${s.expanded})` }),
    el('td', { textContent: s.kind }),
    el('td', { textContent: keepText(s.keep) }),
    el('td', { textContent: s.next_slot > 0 ? fmtTime(s.next_slot * 1000) : '\u2014' }),
    el('td', null, s.last_result
      ? `${s.last_result}${s.last_snapshot ? ` (${s.last_snapshot})` : ''} ${fmtTime(s.last_run * 1000)}`
      : 'never',
    s.last_error ? el('div', { class: 'task-error', textContent: s.last_error }) : null))));
  $('schedules-empty').hidden = list.length > 0;
}

function renderEvents(list) {
  const recent = list.slice(-EVENTS_SHOWN).reverse();
  if (!changed('events', recent)) return;
  $('events').tBodies[0].replaceChildren(...recent.map((e) => el('tr', { data: { op: e.op, outcome: e.outcome || '' } },
    el('td', { textContent: fmtTime(e.time_ms) }),
    el('td', { textContent: e.schedule ? `${e.op} (${e.schedule})` : e.op }),
    el('td', { textContent: e.snapshot || '' }),
    el('td', { textContent: e.outcome || '', class: e.outcome === 'ok' ? 'state-succeeded' : 'state-failed' }),
    el('td', { textContent: fmtDuration(e.duration_ms) }),
    el('td', { textContent: e.requester || `uid ${e.uid}` }),
    el('td', { textContent: e.error || e.detail || '' }))));
  $('events-empty').hidden = list.length > 0;
}

// ---- tasks ---------------------------------------------------------------------------------------------------

const FINISHED = new Set(['succeeded', 'failed']);

// Keeps the newest word on a task: an event that arrives after the long poll's answer must not undo it.
function noteTask(t) {
  const old = ui.tasks.get(t.id);
  if (old && FINISHED.has(old.state) && !FINISHED.has(t.state)) return;
  ui.tasks.set(t.id, t);
  renderTasks();
}

function renderTasks() {
  const list = [...ui.tasks.values()].sort((a, b) => b.created - a.created);
  for (const t of list.slice(TASKS_SHOWN)) ui.tasks.delete(t.id);
  $('tasks').replaceChildren(...list.slice(0, TASKS_SHOWN).map((t) => {
    const p = t.progress || {};
    const running = !FINISHED.has(t.state);
    return el('li', { data: { task: t.id, kind: t.kind, state: t.state } },
      el('div', null, el('strong', { textContent: t.kind }), ` ${t.vm || ''}${t.snapshot ? ` / ${t.snapshot}` : ''} `,
        el('span', { class: `state-${t.state}`, textContent: t.state })),
      running ? el('progress', p.total > 0 ? { max: p.total, value: p.done } : {}) : null,
      running && p.phase ? el('div', { class: 'muted', textContent: p.phase }) : null,
      t.error ? el('div', { class: 'task-error', textContent: t.error.message }) : null);
  }));
  $('tasks-empty').hidden = ui.tasks.size > 0;
}

// METHOD PATH BODY starts a task; waits for it (long polls), shows its error as the API gave it, refreshes.
// True when it succeeded.
async function runTask(method, path, body) {
  clearError();
  let t;
  try {
    t = await api(method, path, body);
    noteTask(t);
    while (!FINISHED.has(t.state)) {
      t = await api('GET', `${P('tasks', t.id)}?wait=10000`);
      noteTask(t);
    }
  } catch (e) {
    report(e);
    await refreshAll();
    return false;
  }
  if (t.state !== 'succeeded') showError(t.error ? t.error.message : `${t.kind} ${t.state}`);
  await refreshAll();
  return t.state === 'succeeded';
}

// ---- actions -----------------------------------------------------------------------------------------------

// The confirm dialog: resolves to null (cancelled) or what was chosen in it.
function ask({ text, ok, run = false, children = false, danger = false }) {
  const d = $('confirm');
  const form = $('confirm-form');
  const cancel = $('confirm-cancel');
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = ok;
  $('confirm-ok').className = danger ? 'danger' : '';
  $('confirm-run-row').hidden = !run;
  $('confirm-run').value = '';
  $('confirm-children-row').hidden = !children;
  $('confirm-children').checked = false;
  return new Promise((resolve) => {
    const done = (value) => {
      form.removeEventListener('submit', onOk);
      cancel.removeEventListener('click', onCancel);
      d.removeEventListener('cancel', onCancel);
      if (d.open) d.close();
      resolve(value);
    };
    const onOk = (ev) => {
      ev.preventDefault();
      done({ run: $('confirm-run').value, children: $('confirm-children').checked });
    };
    const onCancel = (ev) => {
      ev.preventDefault();
      done(null);
    };
    form.addEventListener('submit', onOk);
    cancel.addEventListener('click', onCancel);
    d.addEventListener('cancel', onCancel);
    d.showModal();
    $('confirm-cancel').focus();
  });
}

function runFlags(run) {
  return run === 'start' ? { start: true } : run === 'paused' ? { paused: true } : {};
}

async function doRevert(s) {
  const vm = ui.vm;
  const a = await ask({
    text: `Revert ${vm} to snapshot ${s.name}? The VM's present state is lost unless a snapshot holds it.`,
    ok: 'Revert', run: true, danger: true,
  });
  if (a) await runTask('POST', P('vms', vm, 'snapshots', s.name, 'restore'), runFlags(a.run));
}

async function doPreview(s) {
  const vm = ui.vm;
  const a = await ask({
    text: `Run ${vm} on snapshot ${s.name} for a preview? Its present state is kept: undo returns to it, `
      + 'commit drops it.',
    ok: 'Preview', run: true,
  });
  if (a) await runTask('POST', P('vms', vm, 'previewsnapshot'), { snapshot: { id: s.name }, ...runFlags(a.run) });
}

async function doDelete(s) {
  const vm = ui.vm;
  const a = await ask({
    text: `Delete snapshot ${s.name} of ${vm}?`
      + (s.children > 0 ? ' Its children move to its parent, unless deleted too.' : ''),
    ok: 'Delete', children: s.children > 0, danger: true,
  });
  if (a) await runTask('DELETE', P('vms', vm, 'snapshots', s.name) + (a.children ? '?children=true' : ''));
}

async function doProtect(s, on) {
  clearError();
  try {
    await api('POST', P('vms', ui.vm, 'snapshots', s.name, on ? 'protect' : 'unprotect'));
  } catch (e) {
    report(e);
  }
  await refreshAll();
}

async function doCommit() {
  const vm = ui.vm;
  const a = await ask({
    text: `Keep ${vm}'s state from the preview and drop the state kept before it?`, ok: 'Commit', danger: true,
  });
  if (a) await runTask('POST', P('vms', vm, 'commitsnapshot'));
}

async function doUndo() {
  const vm = ui.vm;
  const a = await ask({
    text: `Return ${vm} to the state it had before the preview? What ran since is lost.`, ok: 'Undo', danger: true,
  });
  if (a) await runTask('POST', P('vms', vm, 'undosnapshot'));
}

async function doCreate(ev) {
  ev.preventDefault();
  const body = {};
  const name = $('create-name').value.trim();
  const description = $('create-description').value;
  const kind = $('create-kind').value;
  if (name) body.name = name;
  if (description) body.description = description;
  if (kind === 'disk-only') body.disk_only = true;
  if (kind === 'live') body.live = true;
  // where QEMU's pre-copy would lose guest writes (TCG before QEMU 9.0) the guest is paused for the save instead
  if (kind === 'precopy') body.live = body.precopy = body.live_fallback = true;
  if ($('create-quiesce').checked) body.quiesce = true;
  if ($('create-halt').checked) body.halt = true;
  $('create-submit').disabled = true;
  try {
    if (await runTask('POST', P('vms', ui.vm, 'snapshots'), body)) $('create-form').reset();
  } finally {
    $('create-submit').disabled = false;
  }
}

// ---- refreshing ------------------------------------------------------------------------------------------------

// The VM list and the selected VM's tree, schedules and events, drawn only if no newer refresh began meanwhile.
async function refreshAll() {
  const seq = ++ui.seq;
  const vm = ui.vm;
  try {
    const [vms, info, snaps, scheds, events] = await Promise.all([
      api('GET', '/api/vms'),
      vm && api('GET', P('vms', vm)),
      vm && api('GET', `${P('vms', vm, 'snapshots')}?marks=true`),
      vm && api('GET', P('vms', vm, 'schedules')),
      vm && api('GET', `/api/events?vm=${encodeURIComponent(vm)}`),
    ]);
    if (seq !== ui.seq) return;
    renderVms(vms.vm);
    if (vm) {
      renderVm(info);
      renderTree(snaps.snapshot);
      renderSchedules(scheds.schedule);
      renderEvents(events.event);
    }
  } catch (e) {
    if (seq === ui.seq) report(e);
  }
}

function refreshSoon() {
  clearTimeout(ui.pending);
  ui.pending = setTimeout(refreshAll, 300);
}

// One server-sent event ("event: KIND\ndata: JSON"): task progress, snapshot changes from any client.
function onEvent(block) {
  let kind = 'message';
  let data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) kind = line.slice(6).trim();
    else if (line.startsWith('data:')) data += line.slice(5).trim();
  }
  if (!data) return;
  let doc;
  try {
    doc = JSON.parse(data);
  } catch (e) {
    return;
  }
  if (kind === 'task' && doc && typeof doc.id === 'string') {
    noteTask(doc);
    if (FINISHED.has(doc.state)) refreshSoon();
  } else if (kind === 'snapshot') {
    refreshSoon();
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

// GET /api/events as a stream through fetch (EventSource cannot send the token), again after a break.
async function live(signal) {
  while (!signal.aborted) {
    try {
      const resp = await fetch('/api/events', {
        headers: { Accept: 'text/event-stream', ...authHeaders() }, cache: 'no-store', credentials: 'omit', signal,
      });
      if (resp.status === 401) {
        needToken('a valid bearer token is required');
        return;
      }
      if (resp.ok && resp.body) {
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            onEvent(buf.slice(0, i));
            buf = buf.slice(i + 2);
          }
          if (buf.length > (1 << 20)) buf = ''; // no event is that long: a broken stream is not kept
        }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    await sleep(3000, signal);
  }
}

function startLive() {
  stopLive();
  ui.live = new AbortController();
  live(ui.live.signal);
  ui.timer = setInterval(() => {
    if (document.visibilityState === 'visible') refreshAll();
  }, REFRESH_MS);
}

async function loadTasks() {
  const doc = await api('GET', '/api/tasks');
  ui.tasks.clear();
  for (const t of doc.task.slice(0, TASKS_SHOWN)) ui.tasks.set(t.id, t);
  renderTasks();
}

// Signed in (a token, or none needed on the UNIX socket): the app, the first VM or the one in the URL.
async function start() {
  clearError();
  let about;
  let vms;
  try {
    [about, vms] = await Promise.all([api('GET', '/api'), api('GET', '/api/vms')]);
  } catch (e) {
    report(e);
    return;
  }
  const token = sessionStorage.getItem(TOKEN_KEY) !== null;
  $('server').textContent = `${about.product} ${about.version} at ${location.host}${token ? '' : ' (no token needed)'}`;
  $('login').hidden = true;
  $('login-message').hidden = true;
  $('app').hidden = false;
  $('refresh').hidden = false;
  $('signout').hidden = !token;
  const names = vms.vm.map((v) => v.name);
  const wanted = decodeURIComponent(location.hash.slice(1));
  ui.vm = null;
  ui.drawn.clear();
  renderVms(vms.vm);
  try {
    await loadTasks();
  } catch (e) {
    report(e);
  }
  if (names.length) selectVm(names.includes(wanted) ? wanted : names[0]);
  startLive();
}

function init() {
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    $('token').value = '';
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    start();
  });
  $('signout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    needToken();
  });
  $('refresh').addEventListener('click', () => {
    clearError();
    refreshAll();
  });
  $('error-close').addEventListener('click', clearError);
  $('create-form').addEventListener('submit', doCreate);
  $('preview-commit').addEventListener('click', doCommit);
  $('preview-undo').addEventListener('click', doUndo);
  start();
}

init();
