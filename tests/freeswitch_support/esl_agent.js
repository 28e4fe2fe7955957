// An agent desktop built on the ESL client FreeSWITCH users already use (npm `modesl`, installed
// from package-lock.json): subscribes to every CUSTOM secure_pay::* subclass as plain events and
// drives `uuid_secure_pay` over `bgapi`, one command per stdin line. Prints one JSON object per
// line: {"ready":true}, {"event":{header:value,...}} (modesl's parsing, url-decoded) and
// {"bgapi":cmd,"job":uuid,"body":text} when a job's BACKGROUND_JOB arrives.
// Usage: node esl_agent.js <port>
'use strict';
const esl = require('modesl');
const readline = require('readline');

const port = parseInt(process.argv[2], 10);
const subclasses = ['start', 'capture', 'digit', 'field', 'complete', 'submit', 'cancel', 'stop',
  'error', 'status'].map((n) => 'secure_pay::' + n);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const conn = new esl.Connection('127.0.0.1', port, 'ClueCon', () => {
  conn.events('plain', 'CUSTOM ' + subclasses.join(' '), () => {
    out({ ready: true });
    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      const cmd = line.trim();
      if (!cmd) return;
      const sp = cmd.indexOf(' ');
      const name = sp < 0 ? cmd : cmd.slice(0, sp);
      const args = sp < 0 ? '' : cmd.slice(sp + 1);
      conn.bgapi(name, args, (evt) => {
        out({ bgapi: cmd, job: evt.getHeader('Job-UUID'), body: evt.getBody() });
      });
    });
    rl.on('close', () => { conn.disconnect(); process.exit(0); });
  });
});

conn.on('esl::event::CUSTOM::**', (evt) => {
  const o = {};
  for (const h of evt.headers) o[h.name] = h.value;
  out({ event: o });
});

conn.on('error', (e) => {
  process.stderr.write('modesl error: ' + e + '\n');
  process.exit(2);
});
