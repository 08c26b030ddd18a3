// Audit history: the timeline, filters, exports and chain verification.

import {
  $, SOURCES, TYPE_LABELS, api, el, errorSentence, fillDatalist, fmtSeconds, orgNames, plural, setMessage, show,
} from './common.js';

// ---- Audit history ---------------------------------------------------------

const auditState = { cursor: null, count: 0, w: null };

function auditFilters() {
  const p = new URLSearchParams();
  const org = $('audit-org').value.trim();
  if (org) p.set('org', org);
  const type = $('audit-type').value;
  if (type) p.set('type', type);
  const since = $('audit-since').value;
  if (since) p.set('since', since + 'T00:00:00Z');
  const until = $('audit-until').value;
  if (until) {
    const d = new Date(until + 'T00:00:00Z');
    d.setUTCDate(d.getUTCDate() + 1); // the "to" day is included; until is exclusive
    p.set('until', d.toISOString().replace('.000Z', 'Z'));
  }
  return p;
}

function parseEnvelope(rec) {
  if (!rec.envelope) return null;
  try { return JSON.parse(rec.envelope); } catch (e) { return null; }
}

function eventDetail(rec, env) {
  const d = (env && env.data) || {};
  switch (rec.type) {
    case 'license.uploaded':
      return 'License ' + d.license_id + (d.slot === 'pending' ? ' stored as pending renewal' : ' in force') +
        (d.replaces ? ', replacing ' + d.replaces : '') + '; grace ' + plural(d.grace_days_effective, 'day') + '.';
    case 'license.rejected':
      return errorSentence(d.code, { org: rec.org }) + ' (' + d.code + (d.fingerprint ? ', fingerprint ' + d.fingerprint.slice(0, 16) + '…' : '') + ')';
    case 'license.rejected_suppressed':
      return plural(d.count, 'further rejection') + ' since ' + fmtSeconds(d.since) + ' (not recorded one by one).';
    case 'license.invalidated':
      return 'License ' + d.license_id + ' revoked for good' + (d.note ? ': ' + d.note : '.');
    case 'license.removed':
      return 'License ' + d.license_id + ' removed; the organization has no license of its own.';
    case 'license.expiring':
      return 'License ' + d.license_id + ' expires within ' + plural(d.days, 'day') + ', at ' + fmtSeconds(d.expires) + ': upload its renewal.';
    case 'license.grace_started':
      return 'License ' + d.license_id + ' reached its expiry at ' + fmtSeconds(d.due_at) + '.';
    case 'license.expired':
      return 'License ' + d.license_id + ' expired (grace over) at ' + fmtSeconds(d.due_at) + '.';
    case 'enforcement.changed':
      return 'Install-wide enforcement set to ' + d.mode + '.';
    case 'usage.reported':
      return plural(d.users, 'active user') + ' reported.';
    case 'seat_enforcement.changed':
      return 'Install-wide seat enforcement set to ' + d.mode + '.';
    case 'ledger.started':
      return 'Version ' + d.version + ', enforcement ' + d.enforcement + ', key ring ' + String(d.keyring_fingerprint || '').slice(0, 12) + '…' +
        (d.ignored_clock_rollback ? ', started despite a clock behind the newest event' : '') + '.';
    case 'invalid':
      return 'A message on ' + rec.subject + ' that is not a valid event; kept in the chain, ignored for state.';
    default:
      return '';
  }
}

function auditItem(rec) {
  const env = parseEnvelope(rec);
  const d = (env && env.data) || {};
  const cls = rec.type === 'license.rejected' || rec.type === 'license.rejected_suppressed' ? 'rejected'
    : rec.type === 'invalid' ? 'invalid'
      : rec.type === 'license.expired' || rec.type === 'license.grace_started' || rec.type === 'license.expiring' ? 'expiry' : null;
  const actor = rec.actor ? rec.actor.kind + ' ' + rec.actor.id : 'unknown';
  const meta = ['org ' + rec.org, 'by ' + actor];
  if (d.source) meta.push('via ' + (SOURCES[d.source] || d.source));
  meta.push('seq ' + rec.seq);
  return el('li', { class: cls, 'data-type': rec.type, 'data-seq': String(rec.seq), 'data-org': rec.org },
    el('div', { class: 'ev-head' },
      el('time', { datetime: rec.at || '', text: rec.at ? fmtSeconds(rec.at) : 'no time' }),
      el('span', { class: 'ev-type', text: TYPE_LABELS[rec.type] || rec.type })),
    el('div', { class: 'ev-meta', text: meta.join(' · ') }),
    el('p', { class: 'ev-detail', text: eventDetail(rec, env) }),
    el('button', { type: 'button', class: 'ev-proof', 'data-seq': String(rec.seq), text: 'Download with proof',
      title: 'The record, its inclusion proof and the signed checkpoint: ledger audit verify-proof checks it offline' }));
}

// download saves blob as name.
function download(blob, name) {
  const a = el('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
}

// downloadProof saves the record's proof bundle (GET /api/audit/proof/record).
async function downloadProof(seq) {
  show($('audit-error'), false);
  const r = await api('GET', '/api/audit/proof/record?seq=' + encodeURIComponent(seq), { raw: true });
  if (!r.ok) {
    $('audit-error').textContent = r.status === 404 ? 'No checkpoint is signed yet: the proof can be downloaded within a minute.'
      : errorSentence(r.code, { message: r.message, retryAfter: r.retryAfter });
    show($('audit-error'), true);
    return;
  }
  download(await r.response.blob(), 'audit-record-' + seq + '-proof.json');
}

// checkpointState holds the latest checkpoint's note for its download.
const checkpointState = { note: null };

// loadCheckpoint shows the latest signed checkpoint: its size, root and
// origin, the note itself and the verifier key.
async function loadCheckpoint() {
  const out = $('checkpoint-result');
  const [r, k] = await Promise.all([
    api('GET', '/api/audit/checkpoint', { raw: true }),
    api('GET', '/api/audit/checkpoint/key', { raw: true }),
  ]);
  if (!r.ok) {
    show($('checkpoint-download'), false);
    setMessage(out, r.status === 404 ? 'ok' : 'error', r.status === 404 ? 'No checkpoint signed yet; the ledger signs one within a minute of a change.'
      : errorSentence(r.code, { message: r.message, retryAfter: r.retryAfter }));
    return;
  }
  const note = await r.response.text();
  checkpointState.note = note;
  const [origin, size, root] = note.split('\n');
  out.replaceChildren(el('p', {},
    'The trail\'s first ', el('strong', { id: 'checkpoint-size', text: size }), ' records, root ',
    el('code', { id: 'checkpoint-root', text: root }), ', signed by ', el('code', { text: origin }), '.'),
  el('p', { class: 'note', text: 'Keep checkpoints outside the install: a later one that does not prove consistent with it means history was rewritten.' }));
  $('checkpoint-note').textContent = note;
  $('checkpoint-key').textContent = k.ok ? (await k.response.text()).trim() : '';
  show($('checkpoint-download'), true);
}


async function loadAudit(more) {
  const p = auditFilters();
  p.set('limit', '200');
  if (more && auditState.cursor) p.set('cursor', auditState.cursor);
  if (!more) {
    $('audit-list').replaceChildren();
    auditState.count = 0;
    const url = new URL(location.href);
    url.search = auditFilters().toString();
    history.replaceState(null, '', url);
  }
  show($('audit-error'), false);
  $('audit-summary').textContent = 'Loading…';
  const r = await api('GET', '/api/audit?' + p.toString());
  if (!r.ok) {
    $('audit-summary').textContent = '';
    $('audit-error').textContent = errorSentence(r.code, { org: p.get('org'), message: r.message, retryAfter: r.retryAfter });
    show($('audit-error'), true);
    show($('audit-more'), false);
    return;
  }
  $('audit-list').append(...r.data.events.map(auditItem));
  auditState.count += r.data.events.length;
  auditState.cursor = r.data.next_cursor;
  show($('audit-more'), !!auditState.cursor);
  $('audit-summary').textContent = auditState.count === 0 ? 'No events match.'
    : 'Showing ' + plural(auditState.count, 'event') + ', oldest first' + (auditState.cursor ? '; more below.' : '.');
}

async function exportAudit(format) {
  const p = auditFilters();
  p.set('format', format);
  show($('audit-error'), false);
  const r = await api('GET', '/api/audit?' + p.toString(), { raw: true });
  if (!r.ok) {
    $('audit-error').textContent = errorSentence(r.code, { org: p.get('org'), message: r.message, retryAfter: r.retryAfter });
    show($('audit-error'), true);
    return;
  }
  download(await r.response.blob(), 'audit-' + (p.get('org') || 'all') + '.' + format);
}

async function verifyChain() {
  const out = $('verify-result');
  out.textContent = 'Verifying…';
  const r = await api('GET', '/api/audit/verify');
  if (!r.ok) {
    setMessage(out, 'error', errorSentence(r.code, { message: r.message, retryAfter: r.retryAfter }));
    return;
  }
  const v = r.data;
  out.replaceChildren();
  // A token of some orgs verifies their records only, and gets no digest.
  const what = v.scope ? 'Records of ' + v.scope.join(', ') : 'Chain';
  const p = v.ok
    ? el('p', { class: 'msg ok', 'data-ok': 'true' }, el('strong', { text: what + ' intact.' }),
      plural(v.rows_checked, 'record') + (v.scope ? ' checked against the trail, nothing changed.' : ' checked, nothing changed or missing.'))
    : el('p', { class: 'msg error', 'data-ok': 'false' }, el('strong', { text: what + ' broken.' }),
      'The record at seq ' + v.first_bad_seq + (v.column ? ' (' + v.column + ')' : '') +
      ' does not verify; ' + plural(v.rows_checked, 'record') + ' before it are intact.');
  out.append(p);
  if (v.digest) {
    out.append(el('p', {}, (v.ok ? 'Latest digest: ' : 'Digest of the intact part: '),
      el('code', { id: 'verify-digest', text: v.digest })),
    el('p', { class: 'note', text: 'Keep this digest outside the install; ledger audit verify --digest proves later that nothing up to it changed.' }));
  }
}

export function initAudit(w) {
  auditState.w = w;
  const q = new URLSearchParams(location.search);
  $('audit-org').value = q.get('org') || '';
  $('audit-type').value = q.get('type') || '';
  if (q.get('since')) $('audit-since').value = q.get('since').slice(0, 10);
  if (q.get('until')) {
    const d = new Date(q.get('until'));
    if (!isNaN(d)) { d.setUTCDate(d.getUTCDate() - 1); $('audit-until').value = d.toISOString().slice(0, 10); }
  }
  const orgs = w.orgs.filter((o) => o !== '*');
  if (orgs.length) fillDatalist($('audit-org-options'), orgs);
  else if (w.role === 'operator') {
    orgNames().then((r) => { if (r.orgs) fillDatalist($('audit-org-options'), r.orgs.map((o) => o.org)); });
  }
  $('audit-filter').addEventListener('submit', (ev) => { ev.preventDefault(); loadAudit(false); });
  $('audit-more').addEventListener('click', () => loadAudit(true));
  $('export-csv').addEventListener('click', () => exportAudit('csv'));
  $('export-jsonl').addEventListener('click', () => exportAudit('jsonl'));
  $('audit-list').addEventListener('click', (ev) => {
    const b = ev.target.closest('button.ev-proof');
    if (b) downloadProof(b.dataset.seq);
  });
  show($('checkpoint-panel'), true);
  $('checkpoint-download').addEventListener('click', () => {
    if (checkpointState.note) download(new Blob([checkpointState.note], { type: 'text/plain' }), 'checkpoint.txt');
  });
  loadCheckpoint();
  if (w.role === 'operator' || w.role === 'auditor') {
    show($('verify-panel'), true);
    $('verify-run').addEventListener('click', verifyChain);
    verifyChain();
  }
  loadAudit(false);
}
