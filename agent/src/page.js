// secure-pay-agent page: renders the server's masked snapshots (SSE) and sends commands.
// Every value from the server is put into the DOM with textContent (never as HTML), and
// elements are only touched when their text changes (no flashing on every digit).
'use strict';

(function () {
  const body = document.body;
  const CALL = body.dataset.call;
  const TOKEN = body.dataset.token;
  const $ = (id) => document.getElementById(id);

  const LABELS = {
    'payment-card-number': 'Card number',
    'expiration-date': 'Expiry date',
    'security-code': 'Security code',
    'postal-code': 'Postal code',
    'reference': 'Reference',
    'amount': 'Amount',
  };
  const BRANDS = {
    visa: 'Visa', mastercard: 'Mastercard', amex: 'American Express', discover: 'Discover',
    jcb: 'JCB', 'diners-club': 'Diners Club', unionpay: 'UnionPay', maestro: 'Maestro',
  };
  const ERRORS = {
    'invalid-card-number': 'Invalid card number: it failed the check digit or has the wrong length.',
    'invalid-card-type': 'This card type is not accepted.',
    'invalid-date': 'Invalid expiry date (wrong format or in the past).',
    'invalid-security-code': 'Invalid security code (wrong length for this card).',
    'invalid-postal-code': 'Invalid postal code.',
    'invalid-reference': 'Invalid reference.',
    'invalid-amount': 'Invalid amount.',
    'input-timeout': 'Input timeout: the customer did not key the digits in time.',
  };
  const MODES = {
    off: 'Not secure (normal call)',
    securing: 'Securing the line\u2026',
    secure: 'Secure: keypad tones are masked',
    submitted: 'Payment submitted',
  };
  const STOP = {
    agent: 'Secure mode ended by the agent.',
    dialplan: 'Secure mode ended by the phone system.',
    timeout: 'Secure mode timed out.',
    hangup: 'The call ended during secure mode.',
    error: 'Secure mode ended because of an error.',
    cancelled: 'Payment cancelled. The line is back to normal.',
  };

  const label = (f) => LABELS[f] || f;
  const brandName = (b) => (b ? BRANDS[b] || b : '');
  const errText = (e) => ERRORS[e] || ('Invalid: ' + e);

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }
  function show(el, on) {
    if (el.hidden === on) el.hidden = !on;
  }
  function setAttr(el, k, v) {
    if (el.getAttribute(k) !== v) el.setAttribute(k, v);
  }

  let state = null;
  let esOpen = false;
  let busy = false;
  let lastAnnounce = '';

  // ---- field rows (created once per field, then updated in place) ----
  const rows = new Map();
  function row(name) {
    let r = rows.get(name);
    if (r) return r;
    const li = document.createElement('li');
    li.className = 'field';
    const head = document.createElement('div');
    head.className = 'f-head';
    const lab = document.createElement('span');
    lab.className = 'f-label';
    lab.textContent = label(name);
    const st = document.createElement('span');
    st.className = 'f-status';
    head.append(lab, st);
    const val = document.createElement('div');
    val.className = 'f-value';
    const masked = document.createElement('span');
    masked.className = 'f-masked';
    const brand = document.createElement('span');
    brand.className = 'f-brand';
    val.append(masked, brand);
    const detail = document.createElement('div');
    detail.className = 'f-detail';
    const err = document.createElement('div');
    err.className = 'f-error';
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'f-reenter secondary';
    btn.textContent = 'Re-enter ' + label(name).toLowerCase();
    btn.addEventListener('click', () => send('capture', name, btn));
    li.append(head, val, detail, err, btn);
    $('fields').append(li);
    r = { li, st, masked, brand, detail, err, btn };
    rows.set(name, r);
    return r;
  }

  function fieldStatusText(f) {
    switch (f.status) {
      case 'capturing': return 'Customer is keying\u2026';
      case 'valid': return 'Valid \u2713';
      case 'invalid': return 'Invalid \u2717';
      default: return 'Waiting';
    }
  }

  function renderField(f, call, canAct) {
    const r = row(f.name);
    setAttr(r.li, 'data-status', f.status);
    setAttr(r.li, 'data-field', f.name);
    setText(r.st, fieldStatusText(f));
    let shown = '';
    if (f.status === 'valid' && f.masked) shown = f.masked;
    else if (f.status === 'capturing' && f.masked) shown = f.masked;
    setText(r.masked, shown);
    setText(r.brand, f.name === 'payment-card-number' ? brandName(f.brand) : '');
    const parts = [];
    if (f.name === 'security-code') {
      if (f.status === 'capturing') parts.push('digits hidden');
    } else if (typeof f.length === 'number' && (f.status === 'capturing' || f.status === 'invalid')) {
      parts.push(f.length + (f.length === 1 ? ' digit' : ' digits'));
    }
    if (f.status === 'valid' && f.name === 'payment-card-number' && f.masked) {
      const m = /(\d{4})$/.exec(f.masked);
      if (m) parts.push('ending ' + m[1]);
    }
    if (f.attempt && f.max_attempts && f.attempt > 1 && f.status !== 'valid') {
      parts.push('attempt ' + f.attempt + ' of ' + f.max_attempts);
    }
    setText(r.detail, parts.join(' \u00b7 '));
    setText(r.err, f.error ? errText(f.error) : '');
    show(r.err, !!f.error);
    r.btn.disabled = !canAct;
  }

  function announce(text) {
    if (text !== lastAnnounce) {
      lastAnnounce = text;
      setText($('progress'), text);
    }
  }

  function progressText(call) {
    if (call.mode === 'submitted' || call.mode === 'off') return '';
    const a = call.fields.find((f) => f.status === 'capturing');
    if (a) {
      if (a.name === 'security-code') return label(a.name) + ': being keyed (hidden).';
      const n = a.length || 0;
      const b = a.name === 'payment-card-number' && a.brand ? ' (' + brandName(a.brand) + ')' : '';
      return label(a.name) + ': ' + n + (n === 1 ? ' digit' : ' digits') + ' entered' + b + '.';
    }
    const bad = call.fields.find((f) => f.status === 'invalid');
    if (bad) return label(bad.name) + ': ' + errText(bad.error || 'invalid');
    if (call.ready) return 'All details captured and valid. Ready to submit.';
    return '';
  }

  function render(s) {
    state = s;
    const call = s.call;
    const pbx = s.pbx;

    setText($('chan'), 'Call ' + call.id + (call.channel ? ' \u00b7 ' + call.channel : ''));

    // connection to the PBX
    const conn = $('conn');
    if (!pbx.connected) {
      setText(conn, 'Lost connection to the phone system; reconnecting\u2026 ' +
        (pbx.last_error ? '(' + pbx.last_error + ') ' : '') +
        'The state shown may be out of date and the buttons are disabled.');
      show(conn, true);
    } else if (!esOpen) {
      show(conn, true);
    } else {
      show(conn, false);
    }

    // secure state
    let mode = call.ended ? 'ended' : call.mode;
    let modeText = call.ended ? 'Call ended' : MODES[call.mode] || call.mode;
    if (!call.ended && call.mode === 'submitted' && call.submit) {
      if (call.submit.result === 'error') {
        mode = 'declined';
        modeText = 'Payment declined';
      } else if (call.submit.result === 'unknown') {
        mode = 'unknown';
        modeText = 'Payment outcome unknown';
      } else if (call.submit.result === 'pending') {
        modeText = 'Submitting the payment\u2026';
      }
    }
    const modeEl = $('mode');
    setAttr(modeEl, 'data-mode', mode);
    setText(modeEl, modeText);
    show($('controls'), !call.ended && call.mode !== 'off');

    // notice
    const n = $('notice');
    let ntext = '';
    if (call.notice) {
      ntext = call.notice.code === 'payment-declined'
        ? 'Payment declined by the payment processor: ' + call.notice.text
        : call.notice.text;
    } else if (call.mode === 'off' && call.stop_reason && STOP[call.stop_reason]) {
      ntext = STOP[call.stop_reason];
    }
    setText(n, ntext);
    setAttr(n, 'class', 'banner ' + (call.notice ? 'error' : 'info'));
    show(n, !!ntext);

    // fields
    const live = pbx.connected && !call.ended;
    const pendingSubmit = call.submit && call.submit.result === 'pending';
    const inSecure = call.mode === 'secure' || call.mode === 'submitted';
    const names = new Set(call.fields.map((f) => f.name));
    for (const [name, r] of rows) {
      if (!names.has(name)) {
        r.li.remove();
        rows.delete(name);
      }
    }
    for (const f of call.fields) renderField(f, call, live && inSecure && !pendingSubmit && !busy);
    show($('nofields'), call.fields.length === 0);
    announce(progressText(call));

    // payment result
    const res = $('result');
    const sub = call.submit;
    if (sub) {
      let t;
      const card = sub.card_number ? /(\d{4})$/.exec(sub.card_number) : null;
      const cardText = (sub.brand ? brandName(sub.brand) + ' ' : '') + (card ? 'card ending ' + card[1] : 'card');
      if (sub.result === 'pending') t = 'Submitting the payment\u2026';
      else if (sub.result === 'success') {
        t = 'Payment successful: ' + cardText + '.';
        const ref = sub.charge_id || sub.token_id;
        if (ref) t += ' Reference ' + ref + '.';
        t += ' Press End secure mode to give the call back its normal controls.';
      } else if (sub.result === 'unknown') {
        // Sent, no answer: never shown as declined. Submit again resends the same card under
        // the same transaction id (idempotency key), so it cannot charge twice.
        t = 'No answer from the payment processor: the payment may have gone through' +
          (sub.transaction_id ? ' (transaction ' + sub.transaction_id + ')' : '') +
          '. Check before taking the card again; Submit retries it safely. (' +
          (sub.message || 'no answer') + ')';
      } else {
        t = 'Payment declined: ' + (sub.message || 'no reason given') + (sub.code ? ' (' + sub.code + ')' : '') +
          '. Use Restart or Re-enter to take the card again.';
      }
      setText($('result-text'), t);
      setAttr(res, 'data-result', sub.result);
      show(res, true);
    } else {
      show(res, false);
    }

    // buttons
    const en = (id, on) => { $(id).disabled = !(on && live && !busy); };
    en('b-start', call.mode === 'off');
    en('b-submit', call.mode === 'secure' && call.ready);
    en('b-restart', inSecure && !pendingSubmit);
    en('b-cancel', inSecure && !pendingSubmit);
    en('b-stop', call.mode !== 'off' && !pendingSubmit);
  }

  // ---- commands ----
  async function send(command, field, btn) {
    if (busy) return;
    busy = true;
    if (state) render(state);
    setText($('busy'), 'Sending\u2026');
    try {
      const r = await fetch('/call/' + encodeURIComponent(CALL) + '/action', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-SecurePay-Token': TOKEN },
        body: JSON.stringify(field ? { command, field } : { command }),
        credentials: 'same-origin', // the HttpOnly session cookie
        cache: 'no-store',
      });
      let j = null;
      try { j = await r.json(); } catch (e) { j = null; }
      setText($('busy'), r.ok ? '' : 'Not done: ' + ((j && j.message) || ('HTTP ' + r.status)));
    } catch (e) {
      setText($('busy'), 'Not sent: the payment service is unreachable.');
    } finally {
      busy = false;
      if (state) render(state);
      // keep keyboard users in the action area when the pressed button becomes disabled
      if (btn && (document.activeElement === document.body || document.activeElement === btn)) {
        const next = btn.disabled ? document.querySelector('.actions button:not([disabled])') : btn;
        if (next) next.focus();
      }
    }
  }
  for (const b of document.querySelectorAll('.actions button')) {
    b.addEventListener('click', () => send(b.dataset.cmd, null, b));
  }

  // ---- live updates ----
  let es = null;
  function connect() {
    es = new EventSource('/call/' + encodeURIComponent(CALL) + '/events');
    es.addEventListener('open', () => { esOpen = true; });
    es.addEventListener('snapshot', (e) => {
      esOpen = true;
      let s;
      try { s = JSON.parse(e.data); } catch (err) { return; }
      render(s);
    });
    es.addEventListener('expired', () => {
      es.close();
      linkGone('This payment link has expired. Open the payment page again from your agent desktop.');
    });
    es.addEventListener('ended', () => {
      // the last snapshot (call ended, payment outcome if any) stays on screen
      es.close();
      linkGone('The call has ended; this page no longer accepts commands.');
    });
    es.addEventListener('error', () => {
      esOpen = false;
      const conn = $('conn');
      if (es.readyState === EventSource.CLOSED) {
        linkGone('The payment service refused the live connection (the call may have ended or the link expired). ' +
          'Open the payment page again from your agent desktop.');
      } else {
        setText(conn, 'Lost connection to the payment service; reconnecting\u2026 The state shown may be out of date.');
        show(conn, true);
        for (const b of document.querySelectorAll('button')) b.disabled = true;
      }
    });
  }
  function linkGone(text) {
    esOpen = false;
    setText($('conn'), text);
    show($('conn'), true);
    for (const b of document.querySelectorAll('button')) b.disabled = true;
  }
  for (const b of document.querySelectorAll('button')) b.disabled = true;
  connect();
})();
