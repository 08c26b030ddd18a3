// Organizations: every org's license and seats, sortable and filterable.
// Every page of /api/orgs is loaded, so the filters apply to every org.

import {
  $, badge, daysWords, el, errorSentence, fmtTime, orgNames, plural, renewalDue, seats, show, tierName,
} from './common.js';

// ---- Organizations -------------------------------------------------------

const orgsState = { rows: [], sort: 'org', dir: 1 };
const STATUS_ORDER = { expired: 0, invalid: 1, grace: 2, missing: 3, valid: 4 };

// Expiring within 30 days with no renewal stored, or already in its grace
// period: due for renewal.
function soon(o) {
  const due = renewalDue(o);
  return due === 'soon' || due === 'grace';
}

// The renewal banner: the orgs whose expiry is near or whose grace has
// begun, soonest first, each with its renewal link.
function renderBanner() {
  const due = orgsState.rows.filter(soon).sort((a, b) => (a.expires < b.expires ? -1 : 1));
  const box = $('orgs-banner');
  show(box, due.length > 0);
  if (!due.length) return;
  const grace = due.filter((o) => o.status === 'grace').length;
  box.className = 'banner ' + (grace ? 'banner-grace' : 'banner-warn');
  $('orgs-banner-text').textContent = plural(due.length, 'organization') + ' need' + (due.length === 1 ? 's' : '') +
    ' a renewal: ' + (grace ? grace + ' in grace period, ' : '') + (due.length - grace) + ' expiring within 30 days.';
  const shown = due.slice(0, 5);
  $('orgs-banner-list').replaceChildren(...shown.map((o) => el('li', { 'data-org': o.org },
    el('strong', { text: o.org }), ' — ' + (o.status === 'grace' ? 'in grace period, expired ' : 'expires ') + fmtTime(o.expires) + ' ',
    el('a', { href: '/ui/license/?org=' + encodeURIComponent(o.org) + '#upload-form', class: 'renew-link', text: 'Renew' }))),
  ...(due.length > shown.length ? [el('li', { text: 'and ' + (due.length - shown.length) + ' more' })] : []));
}

// Over its seat limit: more active users reported than a nonzero limit.
function overLimit(o) { return seats(o).state === 'over'; }

// Sorted by seats: by the share of the limit in use; unreported first,
// then usage without a limit.
function seatKey(o) {
  const s = seats(o);
  if (s.state === 'unreported') return -2;
  if (s.state === 'nolimit' || s.state === 'unlimited') return -1;
  return s.active / s.limit;
}

function seatCell(o) {
  const s = seats(o);
  const tag = s.state === 'over' ? el('span', { class: 'over-tag', text: 'over by ' + s.over })
    : s.state === 'near' ? el('span', { class: 'near-tag', text: s.left === 0 ? 'at limit' : 'near limit' }) : null;
  const title = s.state === 'unreported' ? 'no usage reported' : s.state === 'unlimited' ? s.active + ' users, unlimited'
    : s.state === 'nolimit' ? s.active + ' users, no license' : s.active + ' of ' + s.limit + ' users';
  return el('td', { class: 'seats-cell', 'data-seats': s.state, title },
    el('span', { class: 'seat-num', text: s.cell }), tag);
}

function sortKey(o, key) {
  switch (key) {
    case 'status': return STATUS_ORDER[o.status];
    case 'customer': return (o.customer || '').toLowerCase();
    case 'tier': return o.tier || '';
    case 'expires': return o.expires || '';
    case 'days': return daysWords(o) === '' ? Infinity : o.days_remaining; // no license in force: last
    case 'seats': return seatKey(o);
    default: return o.org;
  }
}

function renderOrgs() {
  const q = $('orgs-q').value.trim().toLowerCase();
  const st = $('orgs-status').value;
  const onlySoon = $('orgs-soon').checked;
  const onlyOver = $('orgs-over').checked;
  const { sort, dir } = orgsState;
  const rows = orgsState.rows.filter((o) =>
    (!q || o.org.includes(q) || (o.customer || '').toLowerCase().includes(q)) &&
    (!st || o.status === st) && (!onlySoon || soon(o)) && (!onlyOver || overLimit(o)));
  rows.sort((a, b) => {
    const x = sortKey(a, sort), y = sortKey(b, sort);
    return (x < y ? -1 : x > y ? 1 : a.org < b.org ? -1 : 1) * dir;
  });
  const body = $('orgs-body');
  body.replaceChildren(...rows.map((o) => {
    const s = soon(o);
    return el('tr', { class: s ? 'soon' : null, 'data-org': o.org },
      el('th', { scope: 'row' }, el('a', { href: '/ui/license/?org=' + encodeURIComponent(o.org), text: o.org }),
        s ? el('span', { class: 'soon-tag', text: o.status === 'grace' ? 'in grace period' : 'expires soon' }) : null),
      el('td', {}, badge(o.status, o.reason)),
      el('td', { text: o.customer || '—' }),
      el('td', { text: tierName(o.tier) }),
      el('td', { text: o.expires ? fmtTime(o.expires) : '—' }),
      el('td', { class: 'days', 'data-days': o.days_remaining === null ? '' : String(o.days_remaining), text: daysWords(o) || '—' }),
      seatCell(o));
  }));
  const nsoon = orgsState.rows.filter(soon).length;
  const nover = orgsState.rows.filter(overLimit).length;
  $('orgs-summary').textContent = 'Showing ' + rows.length + ' of ' + plural(orgsState.rows.length, 'organization') +
    '; ' + nsoon + ' expiring within 30 days or in grace; ' + nover + ' over their seat limit.';
  for (const th of document.querySelectorAll('#orgs-table thead th')) {
    const key = th.querySelector('button').dataset.sort;
    if (key === sort) th.setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending');
    else th.removeAttribute('aria-sort');
  }
}

export async function initOrgs() {
  for (const b of document.querySelectorAll('#orgs-table thead button')) {
    b.addEventListener('click', () => {
      const key = b.dataset.sort;
      if (orgsState.sort === key) orgsState.dir = -orgsState.dir;
      else { orgsState.sort = key; orgsState.dir = 1; }
      renderOrgs();
    });
  }
  $('orgs-filter').addEventListener('submit', (ev) => ev.preventDefault());
  for (const id of ['orgs-q', 'orgs-status', 'orgs-soon', 'orgs-over']) $(id).addEventListener('input', renderOrgs);
  $('orgs-summary').textContent = 'Loading…';
  const r = await orgNames();
  if (r.error) {
    $('orgs-summary').textContent = '';
    $('orgs-error').textContent = errorSentence(r.error.code, { message: r.error.message, retryAfter: r.error.retryAfter });
    show($('orgs-error'), true);
    return;
  }
  orgsState.rows = r.orgs;
  $('orgs-banner-show').addEventListener('click', () => {
    $('orgs-soon').checked = true;
    renderOrgs();
  });
  renderBanner();
  renderOrgs();
}
