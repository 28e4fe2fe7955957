// secure-pay-agent: after the one-time link exchange, move on to the token-free page address.
// A navigation started by this (same-origin) page carries the SameSite=Strict session cookie;
// `replace` also drops the signed link from the tab's history.
'use strict';
(function () {
  const next = document.body.dataset.next;
  if (typeof next === 'string' && next.startsWith('/call/')) location.replace(next);
})();
