// Audit history: the timeline, filters, exports and chain verification.

import {
  $, SOURCES, TYPE_LABELS, UNKNOWN_BADGE, api, daysWords, el, errorSentence, fillBadge, fillDatalist, fmtSeconds, fmtTime, orgNames,
  plural, setMessage, show, unknownOrg,
} from './common.js';

// ---- Audit history ---------------------------------------------------------

// Newest first, a page at a time, both ways (GET /api/audit?order=desc):
// older is the page's next_cursor, newer its prev_cursor read in
// ascending order and shown reversed. The page size is ?limit= (200).
const auditState = {
  w: null, limit: 200, older: null, newer: null, hasOlder: false, hasNewer: false, req: 0,
};

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
  const meta = ['by ' + actor];
  if (d.source) meta.push('via ' + (SOURCES[d.source] || d.source));
  meta.push('seq ' + rec.seq);
  return el('li', { class: cls, 'data-type': rec.type, 'data-seq': String(rec.seq), 'data-org': rec.org },
    el('div', { class: 'ev-head' },
      el('time', { datetime: rec.at || '', text: rec.at ? fmtSeconds(rec.at) : 'no time' }),
      el('span', { class: 'ev-type', text: TYPE_LABELS[rec.type] || rec.type })),
    el('div', { class: 'ev-meta' }, 'org ', orgLink(rec.org), ' · ' + meta.join(' · ')),
    el('p', { class: 'ev-detail', text: eventDetail(rec, env) }),
    el('button', { type: 'button', class: 'ev-proof', 'data-seq': String(rec.seq), text: 'Download with proof',
      title: 'The record, its inclusion proof and the signed checkpoint: ledger audit verify-proof checks it offline' }));
}

// orgLink leads from an event to its org: its license page for those who
// may open it, else its history.
function orgLink(org) {
  if (!org) return '—';
  const w = auditState.w;
  const license = w && (w.role === 'operator' || (w.role === 'org_admin' && org !== '_instance'));
  return el('a', {
    class: 'ev-org', href: license ? '/ui/license/?org=' + encodeURIComponent(org) : '/ui/audit/?org=' + encodeURIComponent(org),
    title: license ? 'The license of ' + org : 'The history of ' + org, text: org,
  });
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


// loadAudit shows a page: go is 'newest' (the first page), 'older' or
// 'newer' than the one shown.
async function loadAudit(go) {
  const req = ++auditState.req; // a later request supersedes this one
  const p = auditFilters();
  p.set('limit', String(auditState.limit));
  const newer = go === 'newer' && auditState.newer;
  if (go === 'older' && auditState.older) p.set('cursor', auditState.older);
  if (newer) p.set('cursor', auditState.newer);
  p.set('order', newer ? 'asc' : 'desc');
  if (go === 'newest') {
    const url = new URL(location.href);
    const f = auditFilters();
    if (auditState.limit !== 200) f.set('limit', String(auditState.limit));
    url.search = f.toString();
    history.replaceState(null, '', url);
    loadOrgHistory(f.get('org'));
  }
  show($('audit-error'), false);
  $('audit-summary').textContent = 'Loading…';
  const r = await api('GET', '/api/audit?' + p.toString());
  if (req !== auditState.req) return;
  if (!r.ok) {
    $('audit-summary').textContent = '';
    $('audit-error').textContent = errorSentence(r.code, { org: p.get('org'), message: r.message, retryAfter: r.retryAfter });
    show($('audit-error'), true);
    return;
  }
  const events = r.data.events.slice();
  if (newer) {
    if (!r.data.next_cursor) { // these are the newest: show a whole first page
      loadAudit('newest');
      return;
    }
    events.reverse();
    auditState.newer = r.data.next_cursor;
    auditState.older = r.data.prev_cursor;
    auditState.hasNewer = auditState.hasOlder = true;
  } else {
    auditState.older = r.data.next_cursor;
    auditState.newer = r.data.prev_cursor;
    auditState.hasOlder = !!r.data.next_cursor;
    auditState.hasNewer = go !== 'newest' && events.length > 0;
  }
  $('audit-list').replaceChildren(...events.map(auditItem));
  for (const nav of [$('audit-pager-top'), $('audit-pager-bottom')]) {
    show(nav, auditState.hasOlder || auditState.hasNewer);
    for (const b of nav.querySelectorAll('button')) {
      b.disabled = b.dataset.go === 'older' ? !auditState.hasOlder : !auditState.hasNewer;
    }
  }
  if (!events.length) {
    $('audit-summary').textContent = 'No events match.';
    return;
  }
  const first = events[0], last = events[events.length - 1];
  $('audit-summary').textContent = 'Showing ' + plural(events.length, 'event') + ', newest first: seq ' + first.seq +
    (events.length > 1 ? ' down to ' + last.seq : '') + (first.at && last.at ? ' (' + fmtTime(first.at) +
    (events.length > 1 ? ' back to ' + fmtTime(last.at) : '') + ')' : '') + '. ' +
    (auditState.hasNewer ? 'Newer events on the previous pages' : 'These are the newest') + '; ' +
    (auditState.hasOlder ? 'older ones on the next.' : 'nothing older.');
  if (go !== 'newest') $('audit-summary').scrollIntoView({ block: 'nearest' });
}

// loadOrgHistory heads the page with the org's current state when the
// page is filtered by one org: the per-org history view.
async function loadOrgHistory(org) {
  const box = $('org-history');
  if (!org) {
    show(box, false);
    $('audit-title').textContent = 'Audit history';
    return;
  }
  $('audit-title').textContent = 'Audit history of ' + org;
  $('org-history-org').textContent = org;
  $('org-history-all').href = '/ui/audit/';
  const w = auditState.w;
  const mayOpen = w.role === 'operator' || (w.role === 'org_admin' && org !== '_instance');
  const link = $('org-history-license');
  link.href = '/ui/license/?org=' + encodeURIComponent(org);
  show(link, mayOpen);
  const badge = $('org-history-badge');
  const text = $('org-history-text');
  show(badge, false);
  text.textContent = 'Every event of ' + org + ', newest first: uploads, removals, revocations, rejected uploads, expiry, usage.';
  show(box, true);
  if (!mayOpen) return; // an auditor reads the trail, not the license
  const r = await api('GET', '/api/license?org=' + encodeURIComponent(org));
  if (!r.ok || $('audit-org').value.trim() !== org) return;
  const rep = r.data;
  fillBadge(badge, rep.status, rep.reason);
  if (unknownOrg(rep) && rep.status === 'missing') badge.textContent = UNKNOWN_BADGE;
  show(badge, true);
  if (unknownOrg(rep)) {
    text.textContent = 'No organization named "' + org + '" has any license event here: check the spelling.';
  } else {
    const days = daysWords(rep);
    text.textContent = (rep.license_id ? 'Now: license ' + rep.license_id + (rep.resolved_from === 'instance' ? ' (instance-wide)' : '') +
      (rep.expires ? ', expires ' + fmtTime(rep.expires) + (days ? ' — ' + days : '') : '') + '.' : 'Now: no license in force.') +
      ' Below, every event of ' + org + ', newest first.';
  }
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
  const limit = parseInt(q.get('limit') || '', 10);
  if (limit >= 1 && limit <= 5000) auditState.limit = limit;
  $('audit-filter').addEventListener('submit', (ev) => { ev.preventDefault(); loadAudit('newest'); });
  for (const nav of [$('audit-pager-top'), $('audit-pager-bottom')]) {
    nav.addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-go]');
      if (b && !b.disabled) loadAudit(b.dataset.go);
    });
  }
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
  loadAudit('newest');
}
