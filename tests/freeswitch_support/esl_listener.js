// Independent ESL judge: the npm `modesl` client (not written by us) subscribes to
// CUSTOM secure_pay::* and DTMF on the FreeSWITCH event socket and prints every event it
// receives as one JSON object per line. Usage: node esl_listener.js <port>
'use strict';
const esl = require('modesl');

const port = parseInt(process.argv[2], 10);
const subclasses = ['start', 'capture', 'digit', 'field', 'complete', 'submit', 'cancel', 'stop',
  'error', 'status'].map((n) => 'secure_pay::' + n);

const conn = new esl.Connection('127.0.0.1', port, 'ClueCon', () => {
  conn.events('json', 'DTMF CUSTOM ' + subclasses.join(' '), () => {
    process.stdout.write(JSON.stringify({ ready: true }) + '\n');
  });
});

conn.on('esl::event::**', (evt) => {
  const name = evt.getHeader('Event-Name');
  if (name !== 'CUSTOM' && name !== 'DTMF') return;
  const out = {};
  for (const h of evt.headers) out[h.name] = h.value;
  if (name === 'DTMF') out['Event-Subclass'] = 'DTMF';
  process.stdout.write(JSON.stringify(out) + '\n');
});

conn.on('error', (e) => {
  process.stderr.write('modesl error: ' + e + '\n');
  process.exit(2);
});
