// Organizations: every org's license, sortable and filterable.

import {
  $, badge, el, errorSentence, fmtTime, orgNames, plural, show, tierName,
} from './common.js';

// ---- Organizations -------------------------------------------------------

const orgsState = { rows: [], sort: 'org', dir: 1 };
const STATUS_ORDER = { expired: 0, invalid: 1, grace: 2, missing: 3, valid: 4 };

// Expiring within 30 days, or already in its grace period: due for renewal.
function soon(o) {
  return (o.status === 'valid' || o.status === 'grace') && o.days_remaining !== null && o.days_remaining <= 30;
}

function sortKey(o, key) {
  switch (key) {
    case 'status': return STATUS_ORDER[o.status];
    case 'customer': return (o.customer || '').toLowerCase();
    case 'tier': return o.tier || '';
    case 'expires': return o.expires || '';
    case 'days': return o.days_remaining === null ? Infinity : o.days_remaining;
    default: return o.org;
  }
}

function renderOrgs() {
  const q = $('orgs-q').value.trim().toLowerCase();
  const st = $('orgs-status').value;
  const onlySoon = $('orgs-soon').checked;
  const { sort, dir } = orgsState;
  const rows = orgsState.rows.filter((o) =>
    (!q || o.org.includes(q) || (o.customer || '').toLowerCase().includes(q)) &&
    (!st || o.status === st) && (!onlySoon || soon(o)));
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
      el('td', { text: o.days_remaining === null ? '—' : String(o.days_remaining) }));
  }));
  const nsoon = orgsState.rows.filter(soon).length;
  $('orgs-summary').textContent = 'Showing ' + rows.length + ' of ' + plural(orgsState.rows.length, 'organization') +
    '; ' + nsoon + ' expiring within 30 days or in grace.';
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
  for (const id of ['orgs-q', 'orgs-status', 'orgs-soon']) $(id).addEventListener('input', renderOrgs);
  $('orgs-summary').textContent = 'Loading…';
  const r = await orgNames();
  if (r.error) {
    $('orgs-summary').textContent = '';
    $('orgs-error').textContent = errorSentence(r.error.code, { message: r.error.message, retryAfter: r.error.retryAfter });
    show($('orgs-error'), true);
    return;
  }
  orgsState.rows = r.orgs;
  renderOrgs();
}
