// License ledger web UI. Plain JavaScript modules, no dependencies: every
// page is the same document; this script shows the part that matches the
// path and hands over to that page's module.

import {
  $, TOKEN_KEY, WHO_KEY, api, errorSentence, show, signOut, token, who,
} from './common.js';
import { initLicense } from './license.js';
import { initOrgs } from './orgs.js';
import { initAudit } from './audit.js';

// ---- pages -----------------------------------------------------------------

function currentPage() {
  const p = location.pathname;
  if (p.startsWith('/ui/license')) return 'license';
  if (p.startsWith('/ui/orgs')) return 'orgs';
  if (p.startsWith('/ui/audit')) return 'audit';
  return 'home';
}

const ALLOWED = {
  license: ['operator', 'org_admin'],
  orgs: ['operator'],
  audit: ['operator', 'org_admin', 'auditor'],
  home: ['operator', 'org_admin', 'auditor'],
};

function homeOf(role) { return role === 'auditor' ? '/ui/audit/' : '/ui/license/'; }

function showSection(name) {
  for (const s of document.querySelectorAll('main > section')) show(s, s.id === 'page-' + name);
}

function setupNav(w) {
  const page = currentPage();
  for (const li of document.querySelectorAll('#nav li')) {
    show(li, li.dataset.roles.split(' ').includes(w.role));
    const a = li.querySelector('a');
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  show($('nav'), true);
  $('who-text').textContent = 'Signed in as ' + w.actor.id + ' (' + w.role.replace('_', ' ') + ')';
  show($('who'), true);
  $('sign-out').addEventListener('click', () => signOut());
}

function initSignIn() {
  showSection('signin');
  const msg = sessionStorage.getItem('ledger.signin_message');
  sessionStorage.removeItem('ledger.signin_message');
  const err = $('signin-error');
  if (msg) { err.textContent = msg; show(err, true); }
  $('signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const tok = $('signin-token').value.trim();
    show(err, false);
    if (tok.length < 32) {
      err.textContent = 'A ledger token has at least 32 characters: paste all of it.';
      show(err, true);
      $('signin-token').focus();
      return;
    }
    $('signin-submit').disabled = true;
    const r = await api('GET', '/api/whoami', { token: tok });
    $('signin-submit').disabled = false;
    if (!r.ok) {
      err.textContent = r.status === 401
        ? 'This token is not known to the ledger. Check that you copied all of it.'
        : errorSentence(r.code, { message: r.message, retryAfter: r.retryAfter });
      show(err, true);
      $('signin-token').focus();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, tok);
    sessionStorage.setItem(WHO_KEY, JSON.stringify(r.data));
    if (currentPage() === 'home') location.assign(homeOf(r.data.role));
    else location.reload();
  });
  $('signin-token').focus();
}


// ---- start -----------------------------------------------------------------

function start() {
  const w = who();
  if (!token() || !w) {
    initSignIn();
    return;
  }
  setupNav(w);
  const page = currentPage();
  if (page === 'home') {
    location.replace(homeOf(w.role));
    return;
  }
  if (!ALLOWED[page].includes(w.role)) {
    showSection('home');
    $('home-title').textContent = 'Not available with this token';
    $('home-title').nextElementSibling.textContent = 'A ' + w.role.replace('_', ' ') + ' token cannot open this page. Choose a page above.';
    return;
  }
  showSection(page);
  if (page === 'license') initLicense(w);
  else if (page === 'orgs') initOrgs();
  else if (page === 'audit') initAudit(w);
}

start();
