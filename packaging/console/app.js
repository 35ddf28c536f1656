// Chronik web console: plain DOM, no framework, no build step.
//
// Every value from the broker (topic names, record keys and values,
// headers, group and user names) is attacker-controlled: it reaches the
// document only as text (text nodes, textContent, input values), never as
// HTML. Writes carry the X-Chronik-CSRF header (the chronik_csrf cookie's
// value; see cmd_console.go).

const main = document.getElementById('main');
const errorBox = document.getElementById('error');
let session = { read_only: true };
let timer = null; // the current page's refresh timer
let generation = 0; // bumps on navigation: late answers of a left page are dropped

// h builds an element: attrs sets properties (on* become listeners),
// children are nodes or strings (text nodes).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && k !== 'list') el[k] = v;
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function link(hash, text) { return h('a', { href: hash }, text); }
function enc(s) { return encodeURIComponent(s); }

function csrf() {
  for (const part of document.cookie.split(';')) {
    const [k, v] = part.trim().split('=');
    if (k === 'chronik_csrf') return v;
  }
  return '';
}

async function api(path, opts = {}) {
  const init = { method: opts.method || 'GET', credentials: 'same-origin', headers: {} };
  if (init.method !== 'GET') {
    init.headers['X-Chronik-CSRF'] = csrf();
    if (opts.body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(opts.body);
    }
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { message: text }; }
  }
  if (!resp.ok) {
    const err = new Error((data && data.message) || resp.statusText);
    err.status = resp.status;
    err.data = data;
    throw err;
  }
  return data;
}

function showError(e) {
  errorBox.textContent = e ? String(e.message || e) : '';
  errorBox.hidden = !e;
}

function fmtBytes(n) {
  if (n === undefined || n === null || n < 0) return '?';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + ' ' + u[i];
}

function fmtTime(ms) {
  const d = new Date(ms);
  return isNaN(d) ? String(ms) : d.toISOString().replace('T', ' ').replace('Z', '');
}

function sparkline(values, width = 120, height = 24) {
  const svgNS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(svgNS, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('width', width);
  svg.setAttribute('height', height);
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  if (values && values.length > 1) {
    const maxV = Math.max(...values, 1);
    const pts = values.map((v, i) =>
      `${(i * (width - 2) / (values.length - 1) + 1).toFixed(1)},${(height - 1 - v / maxV * (height - 2)).toFixed(1)}`);
    const line = document.createElementNS(svgNS, 'polyline');
    line.setAttribute('points', pts.join(' '));
    svg.append(line);
  }
  return svg;
}

// numericColumns are right-aligned, header and cells alike.
const numericColumns = new Set(['Size', 'Lag', 'Offset', 'Log start', 'High watermark', 'Last stable', 'Partitions',
  'Partition', 'Committed', 'From', 'To', 'Headers', 'Used by logs', 'File system free', 'File system size',
  'Partition leaders (of those hosted here)']);

function table(headers, rows, attrs) {
  return h('table', attrs,
    h('thead', null, h('tr', null, headers.map(c => h('th', { class: numericColumns.has(c) ? 'num' : '' }, c)))),
    h('tbody', null, rows));
}

// present drops the null and false parts of a page (optional sections).
function present(nodes) { return nodes.flat(3).filter(x => x !== null && x !== undefined && x !== false); }

function render(...nodes) {
  main.replaceChildren(...present(nodes));
}

// Pages ---------------------------------------------------------------

async function overviewPage(gen) {
  const o = await api('/v1/console/overview');
  if (gen !== generation) return;
  const t = o.throughput;
  render(
    h('h1', null, 'Overview'),
    h('div', { class: 'cards' },
      card('Node', `${o.node_id}`), card('Cluster', o.cluster_id), card('Version', o.version),
      card('Health', o.ready ? 'ready' : 'not ready', o.ready ? 'ok' : 'bad'),
      card('Controller', o.controller >= 0 ? `node ${o.controller}` : 'unknown', o.controller >= 0 ? '' : 'bad'),
      card('Partitions here', `${o.partitions}`),
      card('Offline partitions', `${o.offline.length}`, o.offline.length ? 'bad' : 'ok'),
      h('div', { class: 'card', id: 'throughput' },
        h('div', { class: 'label' }, 'Throughput in / out'),
        h('div', { class: 'value' }, `${fmtBytes(t.in_bytes_per_sec)}/s / ${fmtBytes(t.out_bytes_per_sec)}/s`),
        sparkline(t.in_series), ' ', sparkline(t.out_series))),
    h('h2', null, 'Nodes'),
    table(['Node', 'Address', 'Health', 'Role', 'Partition leaders (of those hosted here)'],
      o.nodes.map(n => h('tr', null,
        h('td', null, `${n.id}`, n.this ? h('span', { class: 'tag' }, 'this node') : null),
        h('td', null, `${n.host}:${n.port}`),
        h('td', { class: n.alive ? 'ok' : 'bad' }, n.alive ? 'up' : 'unreachable'),
        h('td', null, n.controller ? 'controller' : ''),
        h('td', { class: 'num' }, `${o.leaders_by_node[n.id] || 0}`))), { id: 'nodes' }),
    o.raft.cluster ? [h('h2', null, 'Raft'), h('p', null,
      `${o.raft.groups} groups hosted, ${o.raft.active_groups} active, ${o.raft.leaders_here} led here; ${o.raft.peers_connected} peers connected.`)] : null,
    h('h2', null, 'Disk'),
    table(['Data directory', 'Used by logs', 'File system free', 'File system size'],
      o.disks.map(d => h('tr', null, h('td', null, d.dir), h('td', { class: 'num' }, fmtBytes(d.used_bytes)),
        h('td', { class: 'num' }, fmtBytes(d.free_bytes)), h('td', { class: 'num' }, fmtBytes(d.total_bytes))))),
    o.offline.length ? [h('h2', null, 'Offline partitions'), table(['Partition', 'Kind', 'Error'],
      o.offline.map(f => h('tr', null, h('td', null, `${f.topic}-${f.partition}`),
        h('td', null, f.corrupt ? 'corrupt: run chronik repair' : 'failed, retrying'), h('td', null, f.error))))] : null,
  );
  timer = setTimeout(() => run(overviewPage, gen), 2000);
}

function card(label, value, cls) {
  return h('div', { class: 'card' }, h('div', { class: 'label' }, label), h('div', { class: 'value ' + (cls || '') }, value));
}

async function topicsPage(gen) {
  const d = await api('/v1/console/topics');
  if (gen !== generation) return;
  render(h('h1', null, 'Topics'),
    table(['Topic', 'Partitions', 'Size', 'Retention (ms)', 'Cleanup policy'],
      d.topics.map(t => h('tr', null,
        h('td', null, link('#/topics/' + enc(t.name), t.name), t.internal ? h('span', { class: 'tag' }, 'internal') : null),
        h('td', { class: 'num' }, `${t.partitions}`), h('td', { class: 'num' }, fmtBytes(t.size_bytes)),
        h('td', null, t.retention_ms), h('td', null, t.cleanup_policy))), { id: 'topics' }),
    d.truncated ? h('p', { class: 'muted' }, 'Only the first topics are listed.') : null);
}

async function topicPage(gen, name) {
  const t = await api('/v1/console/topics/' + enc(name));
  if (gen !== generation) return;
  const notHere = t.partitions.filter(p => !p.leader_here);
  render(
    h('h1', null, 'Topic ', t.name),
    h('p', null, link('#/topics/' + enc(name) + '/messages', 'Browse messages')),
    notHere.length ? h('div', { class: 'notice' },
      `${notHere.length} of ${t.partitions.length} partitions are not led by this node (${t.node_id}): ` +
      'their messages can only be browsed on the console of the node leading them.') : null,
    h('h2', null, 'Partitions'),
    table(['Partition', 'Leader', 'Replicas', 'Log start', 'High watermark', 'Last stable', 'Size', ''],
      t.partitions.map(p => h('tr', null,
        h('td', { class: 'num' }, `${p.partition}`),
        h('td', null, p.leader >= 0 ? `node ${p.leader}` : 'none', p.leader_here ? h('span', { class: 'tag' }, 'this node') : null),
        h('td', null, p.replicas.join(', ')),
        h('td', { class: 'num' }, p.hosted ? `${p.log_start}` : '—'),
        h('td', { class: 'num' }, p.hosted ? `${p.high_watermark}` : '—'),
        h('td', { class: 'num' }, p.hosted ? `${p.last_stable}` : '—'),
        h('td', { class: 'num' }, fmtBytes(p.size_bytes)),
        h('td', null, p.offline ? h('span', { class: 'bad' }, 'offline: ', p.offline)
          : p.leader_here ? link(`#/topics/${enc(name)}/messages?partition=${p.partition}`, 'messages')
          : h('span', { class: 'muted' }, p.hosted ? `follower here; browse on node ${p.leader}` : `not hosted here; see node ${p.leader}`)))),
      { id: 'partitions' }),
    h('h2', null, 'Configs'),
    configTable(t));
}

function configTable(t) {
  const editable = !session.read_only;
  return table(['Name', 'Value', 'Source', ''], t.configs.map(c => {
    const input = h('input', { value: c.value ?? '', disabled: !editable || c.read_only, size: 30, name: c.name });
    const save = h('button', { disabled: !editable || c.read_only, onclick: () => alterConfig(t.name, { set: { [c.name]: input.value } }) }, 'Save');
    const reset = c.source === 'topic' && editable && !c.read_only
      ? h('button', { onclick: () => alterConfig(t.name, { delete: [c.name] }) }, 'Reset to default') : null;
    return h('tr', { title: c.doc || '' }, h('td', null, c.name), h('td', null, input), h('td', null, c.source), h('td', null, save, ' ', reset));
  }), { id: 'configs' });
}

async function alterConfig(topic, body) {
  try {
    await api('/v1/console/topics/' + enc(topic) + '/configs', { method: 'PUT', body });
    showError(null);
    route();
  } catch (e) { showError(e); }
}

async function messagesPage(gen, name, params) {
  const t = await api('/v1/console/topics/' + enc(name));
  if (gen !== generation) return;
  const part = h('select', { id: 'msg-partition' }, t.partitions.map(p =>
    h('option', { value: p.partition, selected: String(p.partition) === (params.get('partition') || '0') }, `${p.partition}`)));
  const from = h('select', { id: 'msg-from' }, ['offset', 'timestamp', 'end'].map(f =>
    h('option', { value: f, selected: f === (params.get('from') || 'offset') }, f)));
  const offset = h('input', { id: 'msg-offset', type: 'number', min: 0, placeholder: 'log start', value: params.get('offset') || '' });
  const ts = h('input', { id: 'msg-timestamp', type: 'datetime-local', step: 1 });
  const limit = h('input', { id: 'msg-limit', type: 'number', min: 1, max: 500, value: params.get('limit') || '50' });
  const key = h('input', { id: 'msg-key', placeholder: 'key contains', value: params.get('key') || '' });
  const results = h('div', { id: 'msg-results' });
  const load = async (startOffset) => {
    const q = new URLSearchParams({ from: from.value, limit: limit.value });
    if (startOffset !== undefined) { q.set('from', 'offset'); q.set('offset', startOffset); }
    else if (from.value === 'offset' && offset.value !== '') q.set('offset', offset.value);
    else if (from.value === 'timestamp') {
      const ms = Date.parse(ts.value + 'Z');
      if (isNaN(ms)) { showError('pick a timestamp (UTC)'); return; }
      q.set('timestamp', ms);
    }
    if (key.value) q.set('key', key.value);
    try {
      const pg = await api(`/v1/console/topics/${enc(name)}/partitions/${enc(part.value)}/messages?${q}`);
      showError(null);
      results.replaceChildren(...present(pageView(pg, load)));
    } catch (e) {
      showError(e);
      results.replaceChildren();
    }
  };
  render(h('h1', null, 'Messages of ', link('#/topics/' + enc(name), name)),
    h('form', { class: 'inline', id: 'msg-form', onsubmit: (ev) => { ev.preventDefault(); load(); } },
      h('label', null, 'Partition', part), h('label', null, 'From', from), h('label', null, 'Offset', offset),
      h('label', null, 'Timestamp (UTC)', ts), h('label', null, 'Records', limit), h('label', null, 'Key filter', key),
      h('button', { class: 'primary', id: 'msg-load', type: 'submit' }, 'Load')),
    results);
  load();
}

function preview(b) {
  if (b.encoding === 'null') return h('span', { class: 'muted' }, 'null');
  const s = b.text.length > 120 ? b.text.slice(0, 120) + '…' : b.text;
  return [b.encoding === 'hex' ? h('span', { class: 'tag' }, 'hex') : b.encoding === 'json' ? h('span', { class: 'tag' }, 'json') : null, ' ', s.replace(/\s+/g, ' ')];
}

function full(b) {
  if (b.encoding === 'null') return h('p', { class: 'muted' }, 'null');
  return [h('pre', { class: 'enc-' + b.encoding }, b.text),
    b.truncated ? h('p', { class: 'muted' }, `shown: the first bytes of ${b.size}`) : null];
}

function pageView(pg, load) {
  const rows = [];
  for (const r of pg.records) {
    const detail = h('tr', { class: 'record-detail', hidden: true, dataset: { offset: r.offset } },
      h('td', { colSpan: 5 },
        h('h2', null, 'Key'), h('div', { class: 'rec-key' }, full(r.key)),
        h('h2', null, 'Value'), h('div', { class: 'rec-value' }, full(r.value)),
        r.headers.length ? [h('h2', null, 'Headers'), table(['Key', 'Value'],
          r.headers.map(x => h('tr', null, h('td', null, x.key), h('td', null, full(x.value)))))] : null));
    const row = h('tr', { class: 'record-row', dataset: { offset: r.offset, encoding: r.value.encoding }, onclick: () => { detail.hidden = !detail.hidden; } },
      h('td', { class: 'num' }, `${r.offset}`), h('td', null, fmtTime(r.timestamp)),
      h('td', { class: 'preview' }, preview(r.key)), h('td', { class: 'preview' }, preview(r.value)),
      h('td', { class: 'num' }, `${r.headers.length}`));
    rows.push(row, detail);
  }
  const why = { limit: 'page full', bytes: 'page byte bound reached', scan: 'scan bound reached (key filter)', end: 'end of the log' }[pg.stopped] || pg.stopped;
  return [
    h('p', { class: 'muted' }, `Partition ${pg.partition}: log ${pg.log_start} to ${pg.high_watermark}; offsets ${pg.start_offset} to ${pg.next_offset - 1} read (${why}).`),
    table(['Offset', 'Timestamp', 'Key', 'Value', 'Headers'], rows, { id: 'records' }),
    pg.records.length === 0 ? h('p', { class: 'muted' }, 'No records.') : null,
    h('div', { class: 'toolbar' },
      h('button', { id: 'msg-next', disabled: pg.next_offset >= pg.high_watermark, onclick: () => load(pg.next_offset) }, 'Next page')),
  ];
}

async function groupsPage(gen) {
  const d = await api('/v1/console/groups');
  if (gen !== generation) return;
  render(h('h1', null, 'Consumer groups'),
    table(['Group', 'State', 'Protocol', 'Lag', 'Lag over time'],
      d.groups.map(g => h('tr', null, h('td', null, link('#/groups/' + enc(g.group), g.group)), h('td', null, g.state),
        h('td', null, g.protocol_type), h('td', { class: 'num' }, `${g.lag}`), h('td', null, sparkline(g.lag_samples)))),
      { id: 'groups' }),
    d.groups.length === 0 ? h('p', { class: 'muted' }, 'No groups.') : null);
}

async function groupPage(gen, id) {
  const g = await api('/v1/console/groups/' + enc(id));
  if (gen !== generation) return;
  render(h('h1', null, 'Group ', g.group),
    h('div', { class: 'cards' }, card('State', g.state), card('Members', `${g.members.length}`),
      card('Total lag', `${g.lag}`), h('div', { class: 'card' }, h('div', { class: 'label' }, 'Lag over time'), sparkline(g.lag_samples, 200, 40))),
    h('h2', null, 'Members'),
    table(['Member', 'Client', 'Host', 'Assignment'], g.members.map(m => h('tr', null,
      h('td', null, m.member_id, m.instance_id ? h('span', { class: 'tag' }, m.instance_id) : null), h('td', null, m.client_id),
      h('td', null, m.client_host),
      h('td', null, Object.entries(m.assignment).map(([t, ps]) => `${t}: ${ps.join(',')}`).join('; '))))),
    h('h2', null, 'Offsets and lag'),
    table(['Topic', 'Partition', 'Committed', 'High watermark', 'Lag', 'Member'], g.offsets.map(o => h('tr', null,
      h('td', null, o.topic), h('td', { class: 'num' }, `${o.partition}`), h('td', { class: 'num' }, `${o.committed}`),
      h('td', { class: 'num' }, o.high_watermark >= 0 ? `${o.high_watermark}` : 'not hosted here'),
      h('td', { class: 'num' }, o.lag >= 0 ? `${o.lag}` : '?'), h('td', null, o.member || ''))), { id: 'offsets' }),
    h('h2', null, 'Reset offsets'),
    resetForm(g));
}

function resetForm(g) {
  if (session.read_only) return h('p', { class: 'muted' }, 'The console is read-only.');
  if (!g.can_reset) return h('p', { class: 'muted' }, 'Offsets can only be reset while the group has no active members: stop its consumers first.');
  const to = h('select', { id: 'reset-to' }, ['earliest', 'latest', 'timestamp'].map(v => h('option', { value: v }, v)));
  const ts = h('input', { id: 'reset-timestamp', type: 'datetime-local', step: 1 });
  const out = h('div', { id: 'reset-plan' });
  const body = () => {
    const b = { to: to.value };
    if (to.value === 'timestamp') b.timestamp = Date.parse(ts.value + 'Z');
    return b;
  };
  const preview = async () => {
    try {
      const b = body();
      if (b.to === 'timestamp' && isNaN(b.timestamp)) throw new Error('pick a timestamp (UTC)');
      const plan = await api('/v1/console/groups/' + enc(g.group) + '/reset-offsets', { method: 'POST', body: { ...b, dry_run: true } });
      showError(null);
      out.replaceChildren(
        h('p', null, `Reset group ${g.group} to ${b.to}? Committed offsets change as follows:`),
        planTable(plan.plan),
        h('div', { class: 'toolbar' },
          h('button', { class: 'danger', id: 'reset-confirm', onclick: () => confirm(b) }, 'Confirm reset'),
          h('button', { id: 'reset-cancel', onclick: () => out.replaceChildren() }, 'Cancel')));
    } catch (e) { showError(e); }
  };
  const confirm = async (b) => {
    try {
      const res = await api('/v1/console/groups/' + enc(g.group) + '/reset-offsets', { method: 'POST', body: b });
      showError(null);
      route();
      const failed = res.plan.filter(p => p.error);
      if (failed.length) showError(`${failed.length} partitions not reset: ${failed.map(p => `${p.topic}-${p.partition}: ${p.error}`).join('; ')}`);
    } catch (e) { showError(e); }
  };
  return [h('form', { class: 'inline', onsubmit: (ev) => { ev.preventDefault(); preview(); } },
    h('label', null, 'To', to), h('label', null, 'Timestamp (UTC)', ts),
    h('button', { class: 'primary', id: 'reset-preview', type: 'submit' }, 'Preview reset')), out];
}

function planTable(plan) {
  return table(['Topic', 'Partition', 'From', 'To', 'Error'], plan.map(p => h('tr', null,
    h('td', null, p.topic), h('td', { class: 'num' }, `${p.partition}`), h('td', { class: 'num' }, `${p.from}`),
    h('td', { class: 'num' }, `${p.to}`), h('td', { class: 'bad' }, p.error || ''))), { id: 'reset-table' });
}

// twoStep is a button that asks once more before acting.
function twoStep(label, action) {
  const b = h('button', null, label);
  b.addEventListener('click', () => {
    if (b.dataset.armed) { action(); return; }
    b.dataset.armed = '1';
    b.textContent = 'Really ' + label.toLowerCase() + '?';
    b.className = 'danger';
  });
  return b;
}

async function usersPage(gen) {
  const d = await api('/v1/console/users');
  if (gen !== generation) return;
  const rw = !session.read_only;
  const name = h('input', { placeholder: 'user name', id: 'user-name' });
  const pass = h('input', { placeholder: 'password', type: 'password', id: 'user-password', autocomplete: 'new-password' });
  const act = async (fn) => { try { await fn(); showError(null); route(); } catch (e) { showError(e); } };
  render(h('h1', null, 'SCRAM users'),
    table(['User', 'Mechanisms', ''], d.users.map(u => h('tr', null, h('td', null, u.name),
      h('td', null, u.mechanisms.map(m => `${m.mechanism} (${m.iterations} iterations)`).join(', ')),
      h('td', null, rw ? twoStep('Delete', () => act(() => api('/v1/console/users/' + enc(u.name), { method: 'DELETE' }))) : null))), { id: 'users' }),
    d.users.length === 0 ? h('p', { class: 'muted' }, 'No users.') : null,
    rw ? h('form', { class: 'inline', onsubmit: (ev) => { ev.preventDefault(); act(() => api('/v1/console/users', { method: 'POST', body: { username: name.value, password: pass.value } })); } },
      h('label', null, 'User', name), h('label', null, 'Password', pass), h('button', { class: 'primary', type: 'submit', id: 'user-add' }, 'Add user')) : null);
}

async function aclsPage(gen) {
  const d = await api('/v1/console/acls');
  if (gen !== generation) return;
  const rw = !session.read_only;
  const act = async (fn) => { try { await fn(); showError(null); route(); } catch (e) { showError(e); } };
  const sel = (id, opts) => h('select', { id }, opts.map(o => h('option', { value: o }, o)));
  const f = {
    resource_type: sel('acl-rt', ['TOPIC', 'GROUP', 'CLUSTER', 'TRANSACTIONAL_ID']),
    resource_name: h('input', { id: 'acl-name', placeholder: 'name or *' }),
    pattern_type: sel('acl-pt', ['LITERAL', 'PREFIXED']),
    principal: h('input', { id: 'acl-principal', placeholder: 'User:alice' }),
    host: h('input', { id: 'acl-host', value: '*' }),
    operation: sel('acl-op', ['READ', 'WRITE', 'CREATE', 'DELETE', 'ALTER', 'DESCRIBE', 'CLUSTER_ACTION', 'DESCRIBE_CONFIGS', 'ALTER_CONFIGS', 'IDEMPOTENT_WRITE', 'ALL']),
    permission: sel('acl-perm', ['ALLOW', 'DENY']),
  };
  render(h('h1', null, 'ACLs'),
    d.authorizer ? null : h('div', { class: 'notice' }, 'The authorizer is off on this node (--authorizer): ACLs are stored but not enforced.'),
    table(['Resource', 'Pattern', 'Principal', 'Host', 'Operation', 'Permission', ''], d.acls.map(a => h('tr', null,
      h('td', null, `${a.resource_type}:${a.resource_name}`), h('td', null, a.pattern_type), h('td', null, a.principal),
      h('td', null, a.host), h('td', null, a.operation), h('td', null, a.permission),
      h('td', null, rw ? twoStep('Delete', () => act(() => api('/v1/console/acls/delete', { method: 'POST', body: a }))) : null))), { id: 'acls' }),
    d.acls.length === 0 ? h('p', { class: 'muted' }, 'No ACLs.') : null,
    rw ? h('form', { class: 'inline', onsubmit: (ev) => {
      ev.preventDefault();
      const body = Object.fromEntries(Object.entries(f).map(([k, el]) => [k, el.value]));
      act(() => api('/v1/console/acls', { method: 'POST', body }));
    } }, Object.entries(f).map(([k, el]) => h('label', null, k.replace('_', ' '), el)), h('button', { class: 'primary', type: 'submit', id: 'acl-add' }, 'Add ACL')) : null);
}

// Routing -------------------------------------------------------------

async function run(page, gen, ...args) {
  try {
    await page(gen, ...args);
  } catch (e) {
    if (gen !== generation) return;
    showError(e);
    if (!main.firstChild || main.textContent === 'Loading…') render(h('p', { class: 'muted' }, 'Could not load this page.'));
  }
}

function route() {
  clearTimeout(timer);
  generation++;
  const gen = generation;
  const [path, query] = (location.hash.slice(1) || '/').split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', a.getAttribute('href') === '#/' + (parts[0] || ''));
  if (parts.length === 0) return run(overviewPage, gen);
  switch (parts[0]) {
    case 'topics':
      if (parts.length === 1) return run(topicsPage, gen);
      if (parts[2] === 'messages') return run(messagesPage, gen, parts[1], params);
      return run(topicPage, gen, parts[1]);
    case 'groups':
      return parts.length === 1 ? run(groupsPage, gen) : run(groupPage, gen, parts[1]);
    case 'users': return run(usersPage, gen);
    case 'acls': return run(aclsPage, gen);
  }
  render(h('p', null, 'No such page.'));
}

async function start() {
  try {
    session = await api('/v1/console/session');
    document.getElementById('session').textContent =
      `node ${session.node_id} · ${session.version}${session.read_only ? ' · read-only' : ''}`;
  } catch (e) { showError(e); }
  window.addEventListener('hashchange', route);
  route();
}

start();
