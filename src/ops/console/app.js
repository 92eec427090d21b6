// The dtx console: plain JavaScript over the admin API (/api/dtx/admin/). The token stays in this
// tab (sessionStorage). Every value from the server is inserted as text, never as HTML.
'use strict';

const API = '/api/dtx/admin/';
const $ = (id) => document.getElementById(id);
let refreshTimer = null;
let nextPosition = 0;
let current = null;  // the transaction shown in the detail view

function token() { return sessionStorage.getItem('dtx-token') || ''; }

async function call(method, path, body) {
  const headers = { 'Authorization': 'Bearer ' + token() };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(API + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await r.json(); } catch (e) { data = { message: 'not JSON (' + r.status + ')' }; }
  if (r.status === 401 || r.status === 403) {
    if (method === 'GET') { showLogin(data.message || 'not logged in'); }
  }
  return { status: r.status, data };
}

function time(ms) {
  if (!ms) return '-';
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
}

function cell(tr, text, cls) {
  const td = document.createElement('td');
  td.textContent = text === undefined || text === null ? '' : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function show(section) {
  for (const id of ['login', 'list', 'detail', 'audit', 'notifications', 'notification']) {
    $(id).hidden = id !== section;
  }
  $('nav').hidden = section === 'login';
}

function showLogin(message) {
  stopRefresh();
  show('login');
  $('login-error').textContent = message || '';
}

function stopRefresh() {
  if (refreshTimer) clearInterval(refreshTimer);
  refreshTimer = null;
}

function filterQuery() {
  const q = new URLSearchParams();
  q.set('limit', '50');
  if ($('f-status').value) q.set('status', $('f-status').value);
  if ($('f-type').value) q.set('trans_type', $('f-type').value);
  if ($('f-gid').value) q.set('gid_prefix', $('f-gid').value.trim());
  if ($('f-stuck').checked) q.set('stuck', '1');
  if ($('f-waiting').checked) q.set('waiting', '1');
  if ($('f-resolved').value) q.set('resolved', $('f-resolved').value);
  return q;
}

// The business keys of a transaction that waits for them ({keys, held:false, waiting_for,
// waiting_key}), or null: it has not started because another transaction holds one of its keys or
// queues ahead of it on one (docs/saga.md "Business keys").
function waitingFor(t) {
  const k = t.business_keys;
  return k && k.held === false && !k.released && 'waiting_for' in k ? k : null;
}

// "waiting for <gid> on <key>", the gid a link to that transaction's page.
function waitingNote(k) {
  const span = document.createElement('span');
  span.className = 'waiting';
  if (!k.waiting_for) {
    span.textContent = 'waiting for its business keys';
    return span;
  }
  span.append('waiting for ');
  const a = document.createElement('a');
  a.href = '#/tx/' + encodeURIComponent(k.waiting_for);
  a.textContent = k.waiting_for;
  a.className = 'waiting-for';
  span.append(a, ' on ' + k.waiting_key);
  return span;
}

async function loadList(append) {
  const q = filterQuery();
  if (append && nextPosition) q.set('position', String(nextPosition));
  const r = await call('GET', 'transactions?' + q.toString());
  if (r.status !== 200) return;
  const body = $('tx-table').tBodies[0];
  if (!append) body.replaceChildren();
  for (const t of r.data.transactions) {
    const tr = document.createElement('tr');
    if (t.stuck) tr.className = 'stuck';
    const gidCell = cell(tr, '');
    const a = document.createElement('a');
    a.href = '#/tx/' + encodeURIComponent(t.gid);
    a.textContent = t.gid;
    a.className = 'gid-link';
    gidCell.appendChild(a);
    cell(tr, t.trans_type);
    cell(tr, t.status, 'status-' + t.status);
    cell(tr, time(t.create_time_ms));
    cell(tr, t.retries);
    const waiting = waitingFor(t);
    cell(tr, [t.stuck ? 'stuck' : '', t.resolved ? 'resolved' : '', waiting ? 'waiting' : '']
      .filter((x) => x).join(' '));
    const reason = cell(tr, waiting ? '' : t.rollback_reason);
    if (waiting) reason.appendChild(waitingNote(waiting));
    body.appendChild(tr);
  }
  const counts = Object.entries(r.data.status_counts).map(([k, v]) => k + ': ' + v).join(', ');
  $('counts').textContent = 'This page: ' + (counts || 'nothing') +
      (r.data.next_position ? ' (more below)' : '');
  nextPosition = r.data.next_position;
  $('more').hidden = !nextPosition;
}

async function loadDetail(gid) {
  const r = await call('GET', 'transactions/' + encodeURIComponent(gid));
  if (r.status === 404) {
    $('d-gid').textContent = gid + ' (not found)';
    return;
  }
  if (r.status !== 200) return;
  const t = r.data.transaction;
  current = t;
  $('d-gid').textContent = t.gid;
  const facts = $('d-facts');
  facts.replaceChildren();
  const fact = (k, v, id) => {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    if (id) dd.id = id;
    facts.append(dt, dd);
  };
  fact('status', t.status + (t.stuck ? ' (stuck)' : '') + (t.resolved ? ' (resolved)' : ''),
       'd-status');
  fact('type', t.trans_type);
  fact('created', time(t.create_time_ms));
  const final = t.status === 'succeed' || t.status === 'failed';
  if (final) {
    fact('finished', time(t.finish_time_ms));
  } else if (waitingFor(t)) {
    // A waiter sleeps until the keys are released (its stored wake-up is only a late re-check).
    fact('next attempt', 'when its business keys are free (retries: ' + t.retries + ')');
  } else {
    fact('next attempt', time(t.next_cron_time_ms) + ' (retries: ' + t.retries + ')');
  }
  if (t.rollback_reason) fact('reason', t.rollback_reason);
  if (t.business_keys) {
    const k = t.business_keys;
    const dt = document.createElement('dt');
    dt.textContent = 'business keys';
    const dd = document.createElement('dd');
    dd.id = 'd-keys';
    dd.append(k.keys.join(', ') + ' \u2014 ');
    const w = waitingFor(t);
    if (w) {
      dd.append(waitingNote(w));
    } else {
      dd.append(k.released ? 'released (finished)' : k.held ? 'held' : 'not read');
    }
    facts.append(dt, dd);
  }
  if (t.owner) fact('coordinator', t.owner);
  $('act-retry').disabled = final;
  $('act-stop').disabled = final;
  $('act-abort').disabled = !((t.trans_type === 'saga' && t.status === 'submitted') ||
                              ((t.trans_type === 'tcc' || t.trans_type === 'xa') &&
                               t.status === 'prepared'));
  $('act-resolve').disabled = t.status === 'succeed' || t.resolved;
  const body = $('branch-table').tBodies[0];
  body.replaceChildren();
  for (const b of r.data.branches) {
    const tr = document.createElement('tr');
    cell(tr, b.branch_id);
    cell(tr, b.op);
    cell(tr, b.status, 'status-' + (b.status === 'prepared' ? 'submitted' : b.status));
    cell(tr, b.attempts);
    cell(tr, b.url);
    cell(tr, b.last_error, 'err');
    cell(tr, time(b.update_time_ms));
    const td = cell(tr, '');
    if (!final && b.status === 'prepared' && b.attempts > 0) {
      const btn = document.createElement('button');
      btn.type = 'button';
      btn.className = 'skip';
      btn.textContent = 'Skip';
      btn.onclick = () => act('skip', { branch_id: b.branch_id, op: b.op });
      td.appendChild(btn);
    }
    body.appendChild(tr);
  }
  fillCalls($('calls-table').tBodies[0], r.data.branches);
  fillAudit($('d-audit').tBodies[0], r.data.audit, false);
}

// Every kept call of every branch (time, answer, latency, error excerpt), newest first.
function fillCalls(body, branches) {
  const rows = [];
  for (const b of branches) {
    for (const c of (b.calls || [])) rows.push({ b, c });
  }
  rows.sort((x, y) => y.c.time_ms - x.c.time_ms || y.c.seq - x.c.seq);
  body.replaceChildren();
  for (const { b, c } of rows) {
    const tr = document.createElement('tr');
    tr.className = 'call';
    cell(tr, b.branch_id);
    cell(tr, b.op);
    cell(tr, '#' + c.seq);
    cell(tr, time(c.time_ms));
    cell(tr, c.http_status > 0 ? c.http_status : '-');
    cell(tr, c.result, c.result === 'SUCCESS' ? 'status-succeed' : 'status-failed');
    cell(tr, c.latency_ms + ' ms');
    cell(tr, c.error, 'err');
    body.appendChild(tr);
  }
}

function fillAudit(body, records, withGid) {
  body.replaceChildren();
  for (const a of records) {
    const tr = document.createElement('tr');
    cell(tr, time(a.time_ms));
    cell(tr, a.who);
    if (withGid) cell(tr, a.gid);
    cell(tr, a.action + (a.branch_id ? ' ' + a.branch_id + '/' + a.op : ''));
    cell(tr, a.status_before + ' \u2192 ' + a.status_after);
    cell(tr, a.reason);
    body.appendChild(tr);
  }
}

const HELP = {
  retry: 'Runs it now instead of at the next backoff, and starts the backoff over.',
  abort: 'Compensates what ran (saga compensations, tcc cancels), then fails it.',
  stop: 'Fails it at once. Nothing is compensated: clean up by hand.',
  resolve: 'Marks it as handled. Nothing changes in the transaction.',
  skip: 'Marks this branch step as done (you did it by hand) and continues.',
};

function act(action, extra) {
  if (!current) return;
  $('confirm-title').textContent = action + ' ' + current.gid +
      (extra ? ' (branch ' + extra.branch_id + ' ' + extra.op + ')' : '');
  $('confirm-help').textContent = HELP[action];
  $('reason').value = '';
  const dialog = $('confirm');
  dialog.onclose = async () => {
    if (dialog.returnValue !== 'ok') return;
    const body = Object.assign({ reason: $('reason').value, expect_status: current.status },
                               extra || {});
    const r = await call('POST', 'transactions/' + encodeURIComponent(current.gid) + '/' + action,
                         body);
    const result = $('result');
    if (r.status === 200) {
      result.className = 'ok';
      result.textContent = action + ' done: ' + r.data.status_before + ' \u2192 ' +
          r.data.status_after;
    } else {
      result.className = 'error';
      result.textContent = action + ' refused (' + r.status + '): ' + r.data.message +
          (r.data.current ? ' (now ' + r.data.current.status + ')' : '');
    }
    await loadDetail(current.gid);
  };
  dialog.showModal();
}

async function loadNotifications() {
  const q = new URLSearchParams();
  q.set('limit', '100');
  if ($('n-status-filter').value) q.set('status', $('n-status-filter').value);
  const r = await call('GET', 'notifications?' + q.toString());
  if (r.status !== 200) return;
  const body = $('notify-table').tBodies[0];
  body.replaceChildren();
  for (const n of r.data.notifications) {
    const tr = document.createElement('tr');
    const idCell = cell(tr, '');
    const a = document.createElement('a');
    a.href = '#/notify/' + encodeURIComponent(n.id);
    a.textContent = n.id;
    a.className = 'notify-link';
    idCell.appendChild(a);
    cell(tr, n.status, 'notify-' + n.status);
    cell(tr, time(Date.parse(n.created_time)));
    cell(tr, n.attempt_count);
    cell(tr, time(n.next_attempt_time_ms));
    body.appendChild(tr);
  }
  const counts = Object.entries(r.data.status_counts).map(([k, v]) => k + ': ' + v).join(', ');
  $('n-counts').textContent = 'This page: ' + (counts || 'nothing');
}

async function loadNotification(id) {
  const r = await call('GET', 'notifications/' + encodeURIComponent(id));
  if (r.status === 404) {
    $('n-id').textContent = id + ' (not found)';
    return;
  }
  if (r.status !== 200) return;
  const n = r.data.notification;
  $('n-id').textContent = n.id;
  const facts = $('n-facts');
  facts.replaceChildren();
  const fact = (k, v, factId) => {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    if (factId) dd.id = factId;
    facts.append(dt, dd);
  };
  fact('status', n.status, 'n-status');
  fact('url', n.url);
  fact('schedule', (n.preset ? n.preset + ' ' : '') + JSON.stringify(n.schedule || []));
  fact('signed', n.signed ? 'yes' : 'no');
  fact('attempts', n.attempt_count + (n.next_attempt_time_ms ?
      ', next ' + time(n.next_attempt_time_ms) : ''));
  $('n-resend').disabled = !(n.status === 'delivered' || n.status === 'failed');
  $('n-resend').onclick = () => resendNotification(n.id);
  const body = $('n-attempts').tBodies[0];
  body.replaceChildren();
  for (const a of (n.attempts || []).slice().reverse()) {
    const tr = document.createElement('tr');
    cell(tr, a.n);
    cell(tr, time(a.time_ms));
    cell(tr, a.http_status || '-');
    cell(tr, a.latency_ms + ' ms');
    cell(tr, a.error, 'err');
    cell(tr, a.response);
    body.appendChild(tr);
  }
  fillAudit($('n-audit').tBodies[0], r.data.audit, false);
}

function resendNotification(id) {
  $('confirm-title').textContent = 'resend ' + id;
  $('confirm-help').textContent =
      'Delivers it again, its schedule from the start. Earlier attempts stay in the log.';
  $('reason').value = '';
  const dialog = $('confirm');
  dialog.onclose = async () => {
    if (dialog.returnValue !== 'ok') return;
    const r = await call('POST', 'notifications/' + encodeURIComponent(id) + '/resend',
                         { reason: $('reason').value });
    const result = $('n-result');
    if (r.status === 200) {
      result.className = 'ok';
      result.textContent = 'resend done: ' + r.data.status_before + ' \u2192 ' +
          r.data.status_after;
    } else {
      result.className = 'error';
      result.textContent = 'resend refused (' + r.status + '): ' + r.data.message;
    }
    await loadNotification(id);
  };
  dialog.showModal();
}

async function loadAudit() {
  const r = await call('GET', 'audit?limit=200');
  if (r.status !== 200) return;
  fillAudit($('audit-table').tBodies[0], r.data.audit, true);
}

async function route() {
  stopRefresh();
  if (!token()) return showLogin('');
  const who = await call('GET', 'whoami');
  if (who.status !== 200) return;
  $('who').textContent = 'logged in as ' + who.data.who;
  const hash = location.hash || '#/transactions';
  if (hash.startsWith('#/tx/')) {
    show('detail');
    $('result').textContent = '';
    const gid = decodeURIComponent(hash.slice(5));
    await loadDetail(gid);
    refreshTimer = setInterval(() => loadDetail(gid), 2000);
  } else if (hash.startsWith('#/notify/')) {
    show('notification');
    $('n-result').textContent = '';
    const id = decodeURIComponent(hash.slice(9));
    await loadNotification(id);
    refreshTimer = setInterval(() => loadNotification(id), 2000);
  } else if (hash === '#/notifications') {
    show('notifications');
    await loadNotifications();
    refreshTimer = setInterval(loadNotifications, 5000);
  } else if (hash === '#/audit') {
    show('audit');
    await loadAudit();
  } else {
    show('list');
    await loadList(false);
    refreshTimer = setInterval(() => { if ($('auto').checked) loadList(false); }, 5000);
  }
}

$('login-form').onsubmit = (e) => {
  e.preventDefault();
  sessionStorage.setItem('dtx-token', $('token').value.trim());
  $('token').value = '';
  route();
};
$('logout').onclick = () => {
  sessionStorage.removeItem('dtx-token');
  showLogin('logged out');
};
$('filters').onsubmit = (e) => { e.preventDefault(); loadList(false); };
$('more').onclick = () => loadList(true);
$('n-filters').onsubmit = (e) => { e.preventDefault(); loadNotifications(); };
for (const b of document.querySelectorAll('#actions button')) {
  b.onclick = () => act(b.dataset.action);
}
window.addEventListener('hashchange', route);
route();
