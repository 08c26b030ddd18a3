// Settings → License: the status of an org, renewal by paste, and for
// operators the install's enforcement mode.

import {
  $, BADGES, UNKNOWN_BADGE, api, confirmAction, daysText, daysWords, el, errorSentence, fillBadge, fillDatalist, fmtTime, orgNames,
  plural, renewalDue, seats, setMessage, show, tierName, unknownOrg,
} from './common.js';

// ---- Settings → License ---------------------------------------------------

const lic = { org: null, w: null, report: null, seatMode: null };

function renderReport(rep) {
  lic.report = rep;
  $('lic-org').textContent = rep.org === '_instance' ? 'Instance-wide license (_instance)' : rep.org;
  const unknown = unknownOrg(rep);
  fillBadge($('lic-badge'), rep.status, rep.reason);
  if (unknown && rep.status === 'missing') $('lic-badge').textContent = UNKNOWN_BADGE;
  $('lic-badge').dataset.unknown = String(unknown);
  const note = $('lic-note');
  note.className = unknown ? 'msg warn' : 'note';
  if (unknown) {
    note.textContent = 'No organization named "' + rep.org + '" has any license event here: check the spelling. ' +
      (rep.resolved_from === 'instance' ? 'If it is a new organization, the instance-wide license applies to it until it has its own.'
        : 'If it is a new organization, paste its first license below.');
    show(note, true);
  } else if (rep.resolved_from === 'instance') {
    note.textContent = rep.org + ' has no license of its own: the instance-wide license applies.';
    show(note, true);
  } else if (rep.status === 'missing') {
    note.textContent = rep.org + ' has no license: none is in force (its history says what happened). Paste one below.';
    show(note, true);
  } else {
    show(note, false);
  }
  const hist = $('lic-history');
  hist.href = '/ui/audit/?org=' + encodeURIComponent(rep.org);
  hist.textContent = 'History of ' + rep.org;
  $('lic-customer').textContent = rep.customer || '—';
  $('lic-tier').textContent = tierName(rep.tier);
  const days = daysWords(rep);
  $('lic-expires').textContent = rep.expires ? fmtTime(rep.expires) + (days ? ' — ' + days : '') : '—';
  $('lic-grace').textContent = fmtTime(rep.grace_ends);
  $('lic-users').textContent = rep.users_limit === null ? '—' : rep.users_limit === 0 ? 'Unlimited' : String(rep.users_limit);
  $('lic-products').textContent = rep.products && rep.products.length ? rep.products.join(', ') : (rep.license_id ? 'None' : '—');
  $('lic-id').textContent = rep.license_id || '—';
  $('lic-issued').textContent = fmtTime(rep.issued_at);
  $('lic-enforcement').textContent = rep.enforcement || '—';
  const ul = $('lic-features');
  ul.replaceChildren(...(rep.features || []).map((f) => el('li', { text: f })));
  show(ul, (rep.features || []).length > 0);
  show($('lic-features-none'), !(rep.features || []).length);
  if (rep.pending) {
    $('lic-pending-text').textContent = 'License ' + rep.pending.license_id + ' is stored and takes over at ' +
      fmtTime(rep.pending.not_before) + ' (up to 5 minutes earlier, for clock skew). Until then the license above stays in force.';
    show($('lic-pending'), true);
  } else {
    show($('lic-pending'), false);
  }
  renderSeats(rep);
  renderBanner(rep);
  renderOps(rep);
  show($('license-view'), true);
}

// ---- operator actions: remove and revoke --------------------------------

// The actions apply to the org's own license in force; operators only
// (the API refuses everyone else anyway).
function renderOps(rep) {
  const own = lic.w && lic.w.role === 'operator' && rep.resolved_from === 'org' && !!rep.license_id;
  show($('ops-panel'), own);
  if (!own) return;
  $('ops-org').textContent = rep.org;
  $('ops-license').textContent = rep.license_id;
  // A revoked license stays revoked: only its removal is left.
  show($('ops-invalidate-form'), !(rep.status === 'invalid' && rep.reason === 'revoked'));
}

function opsFailed(r, what) {
  setMessage($('ops-result'), 'error', errorSentence(r.code, { org: lic.org, message: r.message, retryAfter: r.retryAfter }),
    what + ': nothing was changed.');
  $('ops-result').scrollIntoView({ block: 'nearest' });
}

async function removeLicense() {
  const rep = lic.report;
  if (!rep || !rep.license_id) return;
  const org = rep.org, id = rep.license_id;
  setMessage($('ops-result'), '', '');
  const ok = await confirmAction('Remove the license of ' + org + '?', [
    'License ' + id + ' will be removed from ' + org + '.',
    rep.pending ? 'Its pending renewal ' + rep.pending.license_id + ' is removed with it.' : '',
    org === '_instance' ? 'Orgs without a license of their own are left with none.'
      : org + ' is left with no license of its own' + ' (the instance-wide license applies, if there is one).',
  ].filter((x) => x), 'Remove license ' + id);
  if (!ok) {
    setMessage($('ops-result'), 'ok', 'Cancelled: the license of ' + org + ' was not removed.');
    return;
  }
  const btn = $('ops-remove');
  btn.disabled = true;
  const r = await api('DELETE', '/api/license?org=' + encodeURIComponent(org), { headers: { 'X-Ledger-Client': 'ui' } });
  btn.disabled = false;
  if (!r.ok) {
    opsFailed(r, 'Not removed');
    return;
  }
  renderReport(r.data);
  setMessage($('ops-result'), 'ok', 'License ' + id + ' removed from ' + org + '. Status now: ' +
    (BADGES[r.data.status] || r.data.status) + (r.data.resolved_from === 'instance' ? ' (the instance-wide license).' : '.'));
  loadInstall();
}

async function invalidateLicense(ev) {
  ev.preventDefault();
  const rep = lic.report;
  if (!rep || !rep.license_id) return;
  const org = rep.org, id = rep.license_id;
  const note = $('ops-note').value.trim();
  if (new TextEncoder().encode(note).length > 1024) {
    setMessage($('ops-result'), 'error', 'The note is longer than 1024 bytes: shorten it.', 'Not revoked: nothing was changed.');
    $('ops-note').focus();
    return;
  }
  setMessage($('ops-result'), '', '');
  const ok = await confirmAction('Revoke the license of ' + org + '?', [
    'License ' + id + ' of ' + org + ' will be revoked for good: it becomes invalid at once and can never be used again.',
    note ? 'Note recorded: "' + note + '"' : 'No note: the audit history will not say why.',
  ], 'Revoke license ' + id);
  if (!ok) {
    setMessage($('ops-result'), 'ok', 'Cancelled: the license of ' + org + ' was not revoked.');
    return;
  }
  const btn = $('ops-invalidate');
  btn.disabled = true;
  const r = await api('POST', '/api/license/invalidate?org=' + encodeURIComponent(org), {
    body: JSON.stringify({ license_id: id, note }), headers: { 'Content-Type': 'application/json', 'X-Ledger-Client': 'ui' },
  });
  btn.disabled = false;
  if (!r.ok) {
    opsFailed(r, 'Not revoked');
    return;
  }
  $('ops-note').value = '';
  renderReport(r.data);
  setMessage($('ops-result'), 'ok', 'License ' + id + ' of ' + org + ' revoked. Status now: ' +
    (BADGES[r.data.status] || r.data.status) + (r.data.reason ? ': ' + r.data.reason : '') + '.');
  loadInstall();
}

// The renewal banner: expiry near (within 30 days, no renewal stored),
// grace begun, or expired; its action goes to the upload form.
function renderBanner(rep) {
  const due = renewalDue(rep);
  const box = $('lic-banner');
  box.dataset.due = due;
  box.className = 'banner banner-' + (due === 'soon' ? 'warn' : due === 'grace' ? 'grace' : 'bad');
  const whose = rep.resolved_from === 'instance' ? 'The instance-wide license that ' + rep.org + ' relies on' : 'This license';
  let text = '';
  if (due === 'soon') {
    text = whose + ' expires on ' + fmtTime(rep.expires) + ' (' + daysText(rep.days_remaining) + '). Upload its renewal before then to keep ' +
      rep.org + ' licensed.';
  } else if (due === 'grace') {
    text = whose + ' expired on ' + fmtTime(rep.expires) + ': the grace period has begun and ends on ' + fmtTime(rep.grace_ends) +
      '. After that ' + rep.org + '\'s users are refused while enforcement is on. Upload the renewal now.';
  } else if (due === 'expired') {
    text = whose + ' expired and its grace period ended on ' + fmtTime(rep.grace_ends) + ': ' + rep.org +
      '\'s users are refused while enforcement is on. Upload the renewal.';
  }
  $('lic-banner-text').textContent = text;
  show(box, due !== '');
}

// What seat enforcement means for this org (soft or hard only).
const SEAT_MODES = {
  off: 'limits are shown, not enforced',
  soft: 'new users past the limit are admitted, with a warning',
  hard: 'new users past the limit are refused',
};

function seatEnforcementText(mode, s) {
  if (mode !== 'soft' && mode !== 'hard') return '';
  const head = 'Seat enforcement is ' + mode + ': ';
  if (s.state === 'nolimit') return '';
  if (s.state === 'unlimited') return head + 'this license sets no user limit, so no one is refused.';
  const reached = s.state === 'over' || (s.state === 'near' && s.left === 0);
  if (mode === 'hard') {
    return head + (reached ? 'the limit is reached, so new users are refused.'
      : 'once ' + plural(s.limit, 'user') + ' are active, new users are refused.');
  }
  return head + (reached ? 'the limit is reached; new users are still admitted, with a warning.'
    : 'past ' + plural(s.limit, 'active user') + ', new users are admitted with a warning.');
}

// The seat bar: users in use against the license's limit. The state is in
// words as well as colour; the bar is a meter with the same words.
function renderSeats(rep) {
  const box = $('lic-seats');
  const s = seats(rep);
  if (s.state === 'unreported' && s.limit === null) {
    show(box, false);
    return;
  }
  box.className = 'seats seats-' + s.state;
  box.dataset.state = s.state;
  const meter = $('seat-meter');
  let count, state = '';
  switch (s.state) {
    case 'unreported':
      count = 'No usage reported · ' + (s.limit === 0 ? 'unlimited' : 'limit ' + plural(s.limit, 'user'));
      break;
    case 'nolimit':
      count = plural(s.active, 'user') + ' · no license sets a limit';
      break;
    case 'unlimited':
      count = plural(s.active, 'user') + ' · unlimited';
      break;
    default:
      count = s.active + ' / ' + s.limit + ' users';
      if (s.state === 'over') state = 'over by ' + s.over;
      else if (s.state === 'near') state = s.left === 0 ? 'at the limit: no seats left' : 'near the limit: ' + plural(s.left, 'seat') + ' left';
      else state = plural(s.left, 'seat') + ' left';
  }
  $('seat-count').textContent = count;
  $('seat-state').textContent = state;
  show($('seat-state'), state !== '');
  const bar = s.state === 'under' || s.state === 'near' || s.state === 'over';
  show(meter, bar);
  if (bar) {
    meter.setAttribute('aria-valuemax', String(s.limit));
    meter.setAttribute('aria-valuenow', String(Math.min(s.active, s.limit)));
    meter.setAttribute('aria-valuetext', s.active + ' of ' + s.limit + ' users, ' + state);
    $('seat-fill').setAttribute('width', String(Math.min(100, (100 * s.active) / s.limit)));
  }
  $('seat-reported').textContent = rep.users_reported_at
    ? 'Reported ' + fmtTime(rep.users_reported_at) + ' by the organization\'s platform.'
    : 'The organization\'s platform has not reported its active users yet.';
  const enf = $('seat-enforcement');
  const text = seatEnforcementText(lic.seatMode, s);
  enf.textContent = text;
  enf.dataset.mode = lic.seatMode || '';
  enf.classList.toggle('refused', lic.seatMode === 'hard' && (s.state === 'over' || (s.state === 'near' && s.left === 0)));
  show(enf, text !== '');
  show(box, true);
}

async function loadLicense(org) {
  lic.org = org;
  const url = new URL(location.href);
  url.searchParams.set('org', org);
  history.replaceState(null, '', url);
  $('org-input').value = org;
  const errNode = $('license-load-error');
  show(errNode, false);
  setMessage($('upload-result'), '', '');
  setMessage($('ops-result'), '', '');
  const [r, inst] = await Promise.all([api('GET', '/api/license?org=' + encodeURIComponent(org)), api('GET', '/api/install')]);
  lic.seatMode = inst.ok ? inst.data.seat_enforcement || null : null;
  if (!r.ok) {
    errNode.textContent = errorSentence(r.code, { org, message: r.message, retryAfter: r.retryAfter });
    show(errNode, true);
    show($('license-view'), false);
    return;
  }
  renderReport(r.data);
}

async function loadInstall() {
  const [inst, ilic] = await Promise.all([api('GET', '/api/install'), api('GET', '/api/license?org=_instance')]);
  if (!inst.ok) return;
  $('inst-id').textContent = inst.data.install_id;
  $('inst-enforcement').textContent = inst.data.enforcement;
  $('enforcement-mode').value = inst.data.enforcement;
  const seatMode = inst.data.seat_enforcement || 'off';
  $('inst-seat-enforcement').textContent = seatMode;
  $('inst-seat-note').textContent = '(' + (SEAT_MODES[seatMode] || '') + ')';
  $('seat-enforcement-mode').value = seatMode;
  if (ilic.ok) fillBadge($('inst-badge'), ilic.data.status, ilic.data.reason);
  show($('install-panel'), true);
}

function readFileInto(input, textarea) {
  input.addEventListener('change', () => {
    const f = input.files && input.files[0];
    if (!f) return;
    if (f.size > 65536) {
      setMessage($('upload-result'), 'error', errorSentence('payload_too_large'), 'Not uploaded.');
      return;
    }
    f.text().then((t) => { textarea.value = t; });
  });
}

async function upload(ev) {
  ev.preventDefault();
  const out = $('upload-result');
  const text = $('upload-text').value;
  if (!lic.org) {
    setMessage(out, 'error', errorSentence('org_required'), 'Not uploaded.');
    return;
  }
  if (!text.trim()) {
    setMessage(out, 'error', 'Paste a license key or license.json, or choose a file, first.', 'Not uploaded.');
    $('upload-text').focus();
    return;
  }
  const force = lic.w.role === 'operator' && $('upload-force').checked;
  const btn = $('upload-submit');
  btn.disabled = true;
  setMessage(out, '', '');
  const before = lic.report;
  const r = await api('POST', '/api/license?org=' + encodeURIComponent(lic.org) + (force ? '&force=true' : ''), {
    body: text, headers: { 'Content-Type': 'text/plain; charset=utf-8', 'X-Ledger-Client': 'ui' },
  });
  btn.disabled = false;
  if (!r.ok) {
    setMessage(out, 'error', errorSentence(r.code, {
      org: lic.org, message: r.message, retryAfter: r.retryAfter, operator: lic.w.role === 'operator',
    }), 'Not uploaded: nothing was changed.');
    if (r.code === 'license_older_than_current' && lic.w.role === 'operator') show($('force-row'), true);
    return;
  }
  const rep = r.data;
  renderReport(rep);
  $('upload-text').value = '';
  $('upload-file').value = '';
  $('upload-force').checked = false;
  let text2;
  if (before && before.seq === rep.seq) text2 = 'This license is already stored for ' + rep.org + '; nothing changed.';
  else if (rep.pending) text2 = 'Stored as the pending renewal of ' + rep.org + '.';
  else text2 = 'License uploaded for ' + rep.org + '. Status: ' + (BADGES[rep.status] || rep.status) + '.';
  setMessage(out, 'ok', text2);
  if (lic.w.role === 'operator') loadInstall();
}

async function setEnforcement(ev) {
  ev.preventDefault();
  const mode = $('enforcement-mode').value;
  const r = await api('PUT', '/api/enforcement', {
    body: JSON.stringify({ mode }), headers: { 'Content-Type': 'application/json', 'X-Ledger-Client': 'ui' },
  });
  if (!r.ok) {
    setMessage($('enforcement-result'), 'error', errorSentence(r.code, { message: r.message, retryAfter: r.retryAfter }));
    return;
  }
  setMessage($('enforcement-result'), 'ok', 'Enforcement is now ' + r.data.mode + '.');
  loadInstall();
  if (lic.org) loadLicense(lic.org);
}


async function setSeatEnforcement(ev) {
  ev.preventDefault();
  const mode = $('seat-enforcement-mode').value;
  const r = await api('PUT', '/api/seat-enforcement', {
    body: JSON.stringify({ mode }), headers: { 'Content-Type': 'application/json', 'X-Ledger-Client': 'ui' },
  });
  if (!r.ok) {
    setMessage($('seat-enforcement-result'), 'error', errorSentence(r.code, { message: r.message, retryAfter: r.retryAfter }));
    return;
  }
  setMessage($('seat-enforcement-result'), 'ok', 'Seat enforcement is now ' + r.data.mode + '.');
  loadInstall();
  if (lic.org) loadLicense(lic.org);
}

export async function initLicense(w) {
  lic.w = w;
  readFileInto($('upload-file'), $('upload-text'));
  $('lic-renew').addEventListener('click', (ev) => {
    ev.preventDefault();
    $('upload-form').scrollIntoView();
    $('upload-text').focus();
  });
  $('upload-form').addEventListener('submit', upload);
  $('org-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const org = $('org-input').value.trim();
    if (org) loadLicense(org);
  });
  const want = new URLSearchParams(location.search).get('org');
  if (w.role === 'operator') {
    show($('org-form'), true);
    $('enforcement-form').addEventListener('submit', setEnforcement);
    $('seat-enforcement-form').addEventListener('submit', setSeatEnforcement);
    $('ops-remove').addEventListener('click', removeLicense);
    $('ops-invalidate-form').addEventListener('submit', invalidateLicense);
    loadInstall();
    orgNames().then((r) => {
      if (r.orgs) fillDatalist($('org-options'), r.orgs.map((o) => o.org).concat(['_instance']).filter((v, i, a) => a.indexOf(v) === i));
    });
    if (want) loadLicense(want);
    else $('org-input').focus();
    return;
  }
  const orgs = w.orgs.filter((o) => o !== '*');
  if (orgs.length > 1) {
    show($('org-form'), true);
    fillDatalist($('org-options'), orgs);
  }
  const org = want && orgs.includes(want) ? want : orgs[0];
  if (org) loadLicense(org);
}
