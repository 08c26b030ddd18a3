// Shared by the pages: the words shown to people, DOM helpers, the
// session (token in sessionStorage) and the API client.

export const TOKEN_KEY = 'ledger.token';
export const WHO_KEY = 'ledger.who';
export const $ = (id) => document.getElementById(id);

// ---- words ---------------------------------------------------------------

// Badges exactly as the design's §2.4.
export const BADGES = {
  valid: 'Active', grace: 'Grace Period', expired: 'Expired', missing: 'No License', invalid: 'Invalid',
};
// What the badge says for an org with no event at all (status missing,
// seq 0): most often a mistyped name.
export const UNKNOWN_BADGE = 'Unknown organization';
export const REASONS = {
  malformed: 'the stored license is damaged',
  unknown_key: 'signed with a vendor key this install does not trust',
  signature_invalid: 'its signature does not match its contents',
  org_mismatch: 'issued for another organization',
  install_mismatch: 'bound to another installation',
  revoked: 'revoked',
  not_yet_valid: 'not valid yet',
};

// One sentence for every error code of the API, for people.
export function errorSentence(code, ctx) {
  const org = (ctx && ctx.org) || 'this organization';
  const retry = ctx && ctx.retryAfter ? ' Wait ' + ctx.retryAfter + ' seconds and try again.' : ' Wait a moment and try again.';
  switch (code) {
    case 'license_malformed':
      return 'This is not a valid license. Paste the whole key exactly as the vendor sent it (it starts with "hfl1.") or the whole license.json file.';
    case 'license_unknown_key':
      return 'This license was signed with a vendor key that this installation does not trust. Ask the vendor which key signed it, or ask your operator to add the vendor\'s public key.';
    case 'license_signature_invalid':
      return 'The license\'s signature does not match its contents: it was changed or damaged after the vendor signed it. Paste it again exactly as received, or ask the vendor to send it again.';
    case 'license_org_mismatch':
      return 'This license was issued for a different organization, not for ' + org + '. Check that you picked the right organization, or ask the vendor for a license for ' + org + '.';
    case 'license_install_mismatch':
      return 'This license is bound to a different installation. Ask the vendor for a license for this installation (see its install ID).';
    case 'license_revoked':
      return 'This license has been revoked for ' + org + ' and can never be used again. Ask the vendor for a new license.';
    case 'license_already_expired':
      return 'This license has already expired, grace period included. Ask the vendor for a renewal.';
    case 'license_older_than_current':
      return 'This license was issued before the one already in force, so it was not applied. Upload a newer license' +
        (ctx && ctx.operator ? ', or tick "Replace even if this license is older" to force it.' : '; only an operator can force an older one.');
    case 'conflict':
      return 'The license of ' + org + ' was being changed at the same moment. Nothing was changed by this upload; try again.';
    case 'unauthorized':
      return 'Your sign-in is no longer accepted. Sign in again.';
    case 'forbidden':
      return 'Your token is not allowed to do this for ' + org + '.';
    case 'payload_too_large':
      return 'That is too long to be a license (over 64 KiB). Paste only the license key or the license.json file.';
    case 'rate_limited':
      return 'Too many requests in a short time.' + retry;
    case 'event_store_unavailable':
      return 'The ledger cannot record or read changes right now; nothing was changed.' + retry;
    case 'org_required':
      return 'Choose an organization first.';
    case 'org_invalid':
      return 'That is not an organization name: use lowercase letters, digits and dashes (or _instance).';
    case 'org_ambiguous':
      return 'Two different organizations were named in one request.';
    case 'bad_request':
      return 'The ledger could not understand the request' + (ctx && ctx.message ? ': ' + ctx.message : '.');
    case 'not_found':
      return 'The ledger does not know this request; is the ledger older than this page?';
    case 'method_not_allowed':
      return 'The ledger does not accept this request.';
    case 'network':
      return 'The ledger did not answer. Check that it is running and reachable, then try again.';
    default:
      return 'The ledger answered with an error' + (code ? ' (' + code + ')' : '') + (ctx && ctx.message ? ': ' + ctx.message : '.');
  }
}

export const TYPE_LABELS = {
  'license.uploaded': 'License uploaded',
  'license.rejected': 'Upload rejected',
  'license.rejected_suppressed': 'Rejections summarised',
  'license.invalidated': 'License revoked',
  'license.removed': 'License removed',
  'license.expiring': 'Expiry notice',
  'license.grace_started': 'Grace period started',
  'license.expired': 'License expired',
  'enforcement.changed': 'Enforcement changed',
  'usage.reported': 'Usage reported',
  'seat_enforcement.changed': 'Seat enforcement changed',
  'ledger.started': 'Ledger started',
  invalid: 'Unreadable message',
};
export const SOURCES = { ui: 'web UI', api: 'API', cli: 'CLI', install: 'install-time file' };


// ---- helpers ---------------------------------------------------------------

export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

export function show(node, on) { node.hidden = !on; }

export function tierName(t) { return t ? t.charAt(0).toUpperCase() + t.slice(1) : '—'; }

export function plural(n, word) { return n + ' ' + word + (n === 1 ? '' : 's'); }

// "2027-11-29 14:19 UTC" from an RFC 3339 time.
export function fmtTime(s) {
  if (!s) return '—';
  const d = new Date(s);
  if (isNaN(d)) return s;
  return d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
}

export function fmtSeconds(s) {
  if (!s) return '—';
  const d = new Date(s);
  if (isNaN(d)) return s;
  return d.toISOString().slice(0, 19).replace('T', ' ') + ' UTC';
}

export function daysText(dr) {
  if (dr === null || dr === undefined) return '';
  if (dr > 0) return plural(dr, 'day') + ' left';
  if (dr === 0) return 'less than a day left';
  if (dr === -1) return 'expired less than a day ago';
  return 'expired ' + plural(-dr - 1, 'day') + ' ago';
}

// daysWords is a status payload's days in words, by its status: days left
// while valid, the grace left while in grace ("in grace: 4 days of grace
// left"), how long ago it expired once expired; '' when there is no
// expiry, or the license is not in force (invalid, missing).
export function daysWords(rep) {
  const dr = rep.days_remaining;
  if (dr === null || dr === undefined) return '';
  if (rep.status === 'grace') {
    // Grace is whole days after the expiry: grace_ends − expires.
    const g = Math.round((Date.parse(rep.grace_ends) - Date.parse(rep.expires)) / 86400000);
    const left = isNaN(g) ? null : g + dr;
    if (left === null || left < 0) return 'in grace';
    return 'in grace: ' + (left === 0 ? 'less than a day' : plural(left, 'day')) + ' of grace left';
  }
  if (rep.status === 'expired') return daysText(Math.min(dr, -1));
  if (rep.status === 'valid') return daysText(Math.max(dr, 0));
  return '';
}

// Days ahead of expiry from which the UI asks for the renewal (the first
// of LICENSE_EXPIRY_NOTICE_DAYS's default thresholds).
export const RENEW_WITHIN_DAYS = 30;

// renewed: a pending license takes over before the one in force expires
// (not_before − 5 minutes, for clock skew), so the org's licensing goes on.
export function renewed(rep) {
  return !!(rep.pending && rep.expires) && Date.parse(rep.pending.not_before) - 5 * 60 * 1000 <= Date.parse(rep.expires);
}

// renewalDue says whether a status payload asks for a renewal, and why:
// 'soon' (valid, expiring within RENEW_WITHIN_DAYS with no renewal
// stored), 'grace' or 'expired'; '' otherwise.
export function renewalDue(rep) {
  if (rep.status === 'grace' || rep.status === 'expired') return rep.status;
  if (rep.status === 'valid' && rep.days_remaining !== null && rep.days_remaining !== undefined &&
      rep.days_remaining <= RENEW_WITHIN_DAYS && !renewed(rep)) return 'soon';
  return '';
}

// seats tells where an org stands against its seat limit, from a status
// payload: state is unreported (no usage yet), nolimit (usage, but no
// license to set a limit), unlimited (users_limit 0), under, near (90 % of
// the limit or more, the limit itself included) or over; cell is what the
// organizations list shows.
export function seats(o) {
  const active = o.users_active === undefined ? null : o.users_active;
  const limit = o.users_limit === undefined ? null : o.users_limit;
  const r = { active, limit, over: 0, left: 0 };
  if (active === null) {
    r.state = 'unreported';
    r.cell = '—';
  } else if (limit === null) {
    r.state = 'nolimit';
    r.cell = active + ' / —';
  } else if (limit === 0) {
    r.state = 'unlimited';
    r.cell = active + ' / ∞';
  } else {
    r.cell = active + ' / ' + limit;
    r.over = Math.max(active - limit, 0);
    r.left = Math.max(limit - active, 0);
    r.state = active > limit ? 'over' : active * 10 >= limit * 9 ? 'near' : 'under';
  }
  return r;
}

export function setMessage(node, kind, text, title) {
  node.replaceChildren();
  if (!text) return;
  const p = el('p', { class: 'msg ' + kind, role: kind === 'error' ? 'alert' : null });
  if (title) p.append(el('strong', { text: title }));
  p.append(text);
  node.append(p);
}

export function fillBadge(node, status, reason) {
  node.className = 'badge badge-' + status;
  node.dataset.status = status;
  node.textContent = BADGES[status] || status;
  if (status === 'invalid' && reason) {
    node.textContent += ': ' + (REASONS[reason] || reason);
    node.dataset.reason = reason;
  } else {
    delete node.dataset.reason;
  }
}

export function badge(status, reason) {
  const b = el('span');
  fillBadge(b, status, reason);
  return b;
}


// ---- session and API -------------------------------------------------------

export function token() { return sessionStorage.getItem(TOKEN_KEY); }

export function who() {
  try { return JSON.parse(sessionStorage.getItem(WHO_KEY)); } catch (e) { return null; }
}

export function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(WHO_KEY);
  if (message) sessionStorage.setItem('ledger.signin_message', message);
  location.assign('/ui/');
}

// api calls the ledger; it resolves to {ok, status, data, code, message,
// retryAfter, response} and never rejects. A 401 ends the session.
export async function api(method, path, opts) {
  opts = opts || {};
  const headers = Object.assign({ Authorization: 'Bearer ' + (opts.token || token()) }, opts.headers || {});
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: opts.body, cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    return { ok: false, status: 0, code: 'network', message: String(e) };
  }
  const out = { ok: resp.ok, status: resp.status, response: resp, retryAfter: resp.headers.get('Retry-After') };
  if (opts.raw && resp.ok) return out;
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  out.data = data;
  if (!resp.ok) {
    out.code = (data && data.error) || 'http_' + resp.status;
    out.message = (data && data.message) || '';
    if (resp.status === 401 && !opts.token) signOut('Your sign-in is no longer accepted; sign in again.');
  }
  return out;
}


export async function orgNames() {
  const names = [];
  let cursor = null;
  for (let i = 0; i < 100; i++) {
    const r = await api('GET', '/api/orgs?limit=1000' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
    if (!r.ok) return { error: r };
    for (const o of r.data.orgs) names.push(o);
    cursor = r.data.next_cursor;
    if (!cursor) break;
  }
  return { orgs: names };
}

export function fillDatalist(list, names) {
  list.replaceChildren(...names.map((n) => el('option', { value: n })));
}

// unknownOrg: a status payload of an org with no event here (seq 0): a
// mistyped name, or an org that never had a license.
export function unknownOrg(rep) {
  return rep.org !== '_instance' && (rep.seq === 0 || rep.seq === null) && rep.resolved_from !== 'org';
}

// confirmAction asks in the page's confirmation dialog; it resolves to
// true when the person confirms, false when they cancel (the button,
// Escape or closing the dialog).
export function confirmAction(title, text, action) {
  const dlg = $('confirm-dialog');
  $('confirm-title').textContent = title;
  const body = $('confirm-text');
  body.replaceChildren(...(Array.isArray(text) ? text : [text]).map((t) => (t instanceof Node ? t : el('p', { text: t }))));
  $('confirm-ok').textContent = action;
  dlg.returnValue = '';
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.showModal();
    $('confirm-cancel').focus();
  });
}
