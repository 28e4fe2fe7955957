//! Test support for the FreeSWITCH integration tests: an isolated FreeSWITCH instance (own
//! config/log/db/run dirs under target/, loopback-only ports, event socket on 127.0.0.1 with a
//! random port; the Drop guard kills only the PID it started), a small ESL client used to
//! DRIVE the calls, and the independent judges (multimon-ng for audio, Node `modesl` for the
//! events: tools we did not write).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where FreeSWITCH is installed, or None (the caller prints SKIPPED and passes).
pub fn prefix() -> Option<PathBuf> {
    let p = PathBuf::from(
        std::env::var_os("FREESWITCH_PREFIX").unwrap_or_else(|| "/opt/freeswitch".into()),
    );
    if p.join("bin/freeswitch").is_file() {
        Some(p)
    } else {
        println!(
            "FreeSWITCH tests SKIPPED: no FreeSWITCH at {} (set FREESWITCH_PREFIX)",
            p.display()
        );
        None
    }
}

/// target/<profile>/ of this test binary.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// The module built by this cargo invocation (`libsecure_pay.so`, built with
/// `--features freeswitch`).
/// `cargo test` leaves the fresh cdylib in deps/ (only `cargo build` copies it up): take the
/// newer of the two.
pub fn built_module() -> PathBuf {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let up = profile_dir().join("libsecure_pay.so");
    let deps = profile_dir().join("deps/libsecure_pay.so");
    let p = match (mtime(&up), mtime(&deps)) {
        (Some(a), Some(b)) if b > a => deps,
        (Some(_), _) => up,
        (None, Some(_)) => deps,
        (None, None) => panic!(
            "{} not built: run cargo test --release --features freeswitch",
            up.display()
        ),
    };
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Options of an instance.
#[derive(Default, Clone)]
pub struct Options {
    /// Extra `<param>`s inside `<settings>` of secure_pay.conf.xml.
    pub secure_pay_settings: Vec<(String, String)>,
    /// Connector profiles: (name, [(key, value)]).
    pub connectors: Vec<(String, Vec<(String, String)>)>,
    /// Load mod_sofia with a profile on 127.0.0.1 (port in `sip_port`).
    pub sip: bool,
    /// Extra dialplan extensions (raw XML) in context `sp`.
    pub extra_dialplan: String,
    /// Use this secure_pay.conf.xml file (included as is) instead of the generated section.
    pub secure_pay_conf_file: Option<PathBuf>,
    /// Run with the core database (no `-nosql`): fs_cli completion needs it.
    pub sql: bool,
    /// RTP port range (first, last) instead of the default 10 ports (many concurrent SIP calls).
    pub rtp_ports: Option<(u16, u16)>,
    /// Load mod_conference with a profile `default` (8 kHz, 20 ms, no energy gate).
    pub conference: bool,
    /// Load this mod_secure_pay.so instead of the test build (symlinked, so /proc/PID/maps names
    /// it): the packaged module in tests/package_freeswitch.rs.
    pub module: Option<PathBuf>,
}

pub struct FreeSwitch {
    pub dir: PathBuf,
    pub esl_port: u16,
    pub sip_port: u16,
    child: Child,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl FreeSwitch {
    pub fn start(prefix: &Path, opts: &Options) -> FreeSwitch {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = profile_dir().join(format!("fs-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["conf", "log", "db", "run", "temp", "rec", "mod"] {
            std::fs::create_dir_all(dir.join(d)).expect("mkdir");
        }
        // Our own module dir (like a production install): FreeSWITCH's modules symlinked, ours
        // copied in as mod_secure_pay.so, loaded by name so `reload mod_secure_pay` works.
        let module = dir.join("mod/mod_secure_pay.so");
        match &opts.module {
            Some(m) => std::os::unix::fs::symlink(m, &module).expect("link module"),
            None => {
                std::fs::copy(built_module(), &module).expect("copy module");
            }
        }
        for e in std::fs::read_dir(prefix.join("lib/freeswitch/mod")).expect("FreeSWITCH mod dir") {
            let p = e.expect("dir entry").path();
            if p.extension().is_some_and(|x| x == "so") {
                let _ = std::os::unix::fs::symlink(
                    &p,
                    dir.join("mod").join(p.file_name().expect("name")),
                );
            }
        }
        let esl_port = free_port();
        let sip_port = free_port();
        let (rtp_base, rtp_last) = opts.rtp_ports.unwrap_or_else(|| {
            let b = 20000 + (std::process::id() as u16 % 200) * 100 + (n as u16 % 10) * 10;
            (b, b + 9)
        });
        let settings: String = opts
            .secure_pay_settings
            .iter()
            .map(|(k, v)| {
                format!(
                    "<param name=\"{}\" value=\"{}\"/>",
                    xml_escape(k),
                    xml_escape(v)
                )
            })
            .collect();
        let connectors: String = opts
            .connectors
            .iter()
            .map(|(name, kv)| {
                let ps: String = kv
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "<param name=\"{}\" value=\"{}\"/>",
                            xml_escape(k),
                            xml_escape(v)
                        )
                    })
                    .collect();
                format!("<connector name=\"{}\">{ps}</connector>", xml_escape(name))
            })
            .collect();
        let (conference_load, conference_conf) = if opts.conference {
            (
                "<load module=\"mod_conference\"/>",
                r#"<configuration name="conference.conf" description="conference">
  <caller-controls><group name="none"></group></caller-controls>
  <profiles><profile name="default">
    <param name="rate" value="8000"/>
    <param name="interval" value="20"/>
    <param name="energy-level" value="0"/>
    <param name="caller-controls" value="none"/>
  </profile></profiles>
</configuration>"#,
            )
        } else {
            ("", "")
        };
        let sofia_load = if opts.sip {
            "<load module=\"mod_sofia\"/>"
        } else {
            ""
        };
        let sofia_conf = if opts.sip {
            format!(
                r#"<configuration name="sofia.conf" description="sofia">
  <global_settings><param name="log-level" value="0"/></global_settings>
  <profiles><profile name="sp">
    <settings>
      <param name="context" value="sp"/>
      <param name="dialplan" value="XML"/>
      <param name="sip-ip" value="127.0.0.1"/>
      <param name="rtp-ip" value="127.0.0.1"/>
      <param name="ext-rtp-ip" value="127.0.0.1"/>
      <param name="ext-sip-ip" value="127.0.0.1"/>
      <param name="sip-port" value="{sip_port}"/>
      <param name="auth-calls" value="false"/>
      <param name="accept-blind-reg" value="true"/>
      <param name="inbound-codec-prefs" value="PCMU"/>
      <param name="outbound-codec-prefs" value="PCMU"/>
      <param name="dtmf-type" value="rfc2833"/>
      <param name="liberal-dtmf" value="true"/>
      <param name="rfc2833-pt" value="101"/>
      <param name="rtp-timer-name" value="soft"/>
      <param name="apply-inbound-acl" value="loopback.auto"/>
      <param name="manage-presence" value="false"/>
    </settings>
  </profile></profiles>
</configuration>"#
            )
        } else {
            String::new()
        };
        let secure_pay_conf = match &opts.secure_pay_conf_file {
            Some(f) => format!("<X-PRE-PROCESS cmd=\"include\" data=\"{}\"/>", f.display()),
            None => format!(
                "<configuration name=\"secure_pay.conf\" description=\"secure_pay\">\n      \
                 <settings>{settings}</settings>\n      <connectors>{connectors}</connectors>\n    \
                 </configuration>"
            ),
        };
        let rec = dir.join("rec");
        let xml = format!(
            r#"<?xml version="1.0"?>
<document type="freeswitch/xml">
  <section name="configuration" description="config">
    <configuration name="switch.conf" description="core">
      <settings>
        <param name="loglevel" value="debug"/>
        <param name="max-sessions" value="2000"/>
        <param name="sessions-per-second" value="1000"/>
        <param name="rtp-start-port" value="{rtp_base}"/>
        <param name="rtp-end-port" value="{rtp_end}"/>
        <param name="dump-cores" value="no"/>
      </settings>
    </configuration>
    <configuration name="modules.conf" description="modules">
      <modules>
        <load module="mod_logfile"/>
        <load module="mod_event_socket"/>
        <load module="mod_commands"/>
        <load module="mod_dptools"/>
        <load module="mod_dialplan_xml"/>
        <load module="mod_loopback"/>
        <load module="mod_sndfile"/>
        <load module="mod_native_file"/>
        <load module="mod_tone_stream"/>
        {sofia_load}
        {conference_load}
        <load module="mod_secure_pay"/>
      </modules>
    </configuration>
    <configuration name="logfile.conf" description="log">
      <settings><param name="rotate-on-hup" value="true"/></settings>
      <profiles><profile name="default"><settings>
        <param name="rollover" value="0"/>
      </settings><mappings><map name="all" value="debug,info,notice,warning,err,crit,alert"/></mappings></profile></profiles>
    </configuration>
    <configuration name="event_socket.conf" description="esl">
      <settings>
        <param name="listen-ip" value="127.0.0.1"/>
        <param name="listen-port" value="{esl_port}"/>
        <param name="password" value="ClueCon"/>
        <param name="apply-inbound-acl" value="loopback.auto"/>
      </settings>
    </configuration>
    {secure_pay_conf}
    {sofia_conf}
    {conference_conf}
  </section>
  <section name="dialplan" description="dialplan">
    <context name="sp">
      <extension name="customer">
        <condition field="destination_number" expression="^cust(\d+)$">
          <action application="answer"/>
          <action application="bridge" data="{{loopback_bowout=false}}loopback/agent$1/sp"/>
        </condition>
      </extension>
      <extension name="customer_null_agent">
        <condition field="destination_number" expression="^custnull(\d+)$">
          <action application="answer"/>
          <action application="bridge" data="null/agent$1"/>
        </condition>
      </extension>
      <extension name="customer_app">
        <condition field="destination_number" expression="^custapp(\d+)$">
          <action application="answer"/>
          <action application="secure_pay" data=""/>
          <action application="bridge" data="{{loopback_bowout=false}}loopback/agent$1/sp"/>
        </condition>
      </extension>
      <extension name="agent">
        <condition field="destination_number" expression="^agent(\d+)$">
          <action application="answer"/>
          <action application="park"/>
        </condition>
      </extension>
      <extension name="sipcust">
        <condition field="destination_number" expression="^sipcust(\d+)$">
          <action application="answer"/>
          <action application="bridge" data="{{loopback_bowout=false}}loopback/agent$1/sp"/>
        </condition>
      </extension>
      <extension name="parkit">
        <condition field="destination_number" expression="^park$">
          <action application="answer"/>
          <action application="park"/>
        </condition>
      </extension>
      {extra}
    </context>
  </section>
</document>
"#,
            rtp_end = rtp_last,
            extra = opts.extra_dialplan,
        );
        let _ = rec;
        std::fs::write(dir.join("conf/freeswitch.xml"), xml).expect("write conf");
        let out = std::fs::File::create(dir.join("stdout.log")).expect("stdout log");
        let err = out.try_clone().expect("clone");
        let d = |s: &str| dir.join(s);
        let child = Command::new(prefix.join("bin/freeswitch"))
            .args(["-nf", "-nonat"])
            .args(if opts.sql { &[][..] } else { &["-nosql"][..] })
            .arg("-conf")
            .arg(d("conf"))
            .arg("-log")
            .arg(d("log"))
            .arg("-db")
            .arg(d("db"))
            .arg("-run")
            .arg(d("run"))
            .arg("-temp")
            .arg(d("temp"))
            .arg("-recordings")
            .arg(d("rec"))
            .arg("-mod")
            .arg(d("mod"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn freeswitch");
        let fs = FreeSwitch {
            dir,
            esl_port,
            sip_port,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut e) = Esl::connect(esl_port) {
                let st = e.api("status");
                if st.contains("UP") && st.contains("ready") {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "FreeSWITCH did not come up; see {}",
                fs.dir.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        fs
    }

    pub fn esl(&self) -> Esl {
        Esl::connect(self.esl_port).expect("esl connect")
    }

    pub fn rec(&self, name: &str) -> PathBuf {
        self.dir.join("rec").join(name)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/freeswitch.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the process to exit (after e.g. `fsctl shutdown`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for FreeSwitch {
    fn drop(&mut self) {
        if let Ok(mut e) = Esl::connect(self.esl_port) {
            let _ = e.send_raw("api fsctl shutdown\n\n");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut exited = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !exited {
            // Only the PID we started.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A passing test leaves nothing behind; a failing one keeps logs and recordings.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// ESL event: headers (url-decoded) and body.
#[derive(Clone, Debug, Default)]
pub struct EslEvent {
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl EslEvent {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.headers.get(k).map(String::as_str)
    }
}

pub struct Esl {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

/// The repository root (also from the agent crate's tests in agent/tests, which share this
/// harness).
fn repo_root() -> PathBuf {
    let m = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if m.join("build.rs").is_file() {
        m
    } else {
        m.parent().map(Path::to_path_buf).unwrap_or(m)
    }
}

/// `%XX` decoding (ESL plain event values are URL-encoded).
fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_headers(block: &str, decode: bool) -> HashMap<String, String> {
    block
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| {
            (
                k.to_string(),
                if decode { url_decode(v) } else { v.to_string() },
            )
        })
        .collect()
}

impl Esl {
    pub fn connect(port: u16) -> std::io::Result<Esl> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut e = Esl {
            r: BufReader::new(s.try_clone()?),
            w: s,
        };
        let (h, _) = e.read_msg()?;
        if h.get("Content-Type").map(String::as_str) != Some("auth/request") {
            return Err(std::io::Error::other("no auth request"));
        }
        e.send_raw("auth ClueCon\n\n")?;
        let (h, _) = e.read_msg()?;
        if !h.get("Reply-Text").is_some_and(|t| t.starts_with("+OK")) {
            return Err(std::io::Error::other("auth failed"));
        }
        Ok(e)
    }

    pub fn send_raw(&mut self, s: &str) -> std::io::Result<()> {
        self.w.write_all(s.as_bytes())
    }

    fn read_msg(&mut self) -> std::io::Result<(HashMap<String, String>, String)> {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = self.r.read_line(&mut line)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "esl closed",
                ));
            }
            if line == "\n" {
                if head.is_empty() {
                    continue;
                }
                break;
            }
            head.push_str(&line);
        }
        let h = parse_headers(&head, false);
        let mut body = String::new();
        if let Some(len) = h
            .get("Content-Length")
            .and_then(|l| l.trim().parse::<usize>().ok())
        {
            let mut buf = vec![0u8; len];
            self.r.read_exact(&mut buf)?;
            body = String::from_utf8_lossy(&buf).into_owned();
        }
        Ok((h, body))
    }

    /// Runs an API command; returns its body (`+OK ...`, `-ERR ...`, or output).
    pub fn api(&mut self, cmd: &str) -> String {
        self.send_raw(&format!("api {cmd}\n\n")).expect("esl send");
        loop {
            let (h, body) = self.read_msg().expect("esl read");
            if h.get("Content-Type").map(String::as_str) == Some("api/response") {
                return body;
            }
        }
    }

    /// Subscribes (e.g. `plain DTMF CUSTOM secure_pay::digit`).
    pub fn subscribe(&mut self, spec: &str) {
        self.send_raw(&format!("event {spec}\n\n"))
            .expect("esl send");
        loop {
            let (h, _) = self.read_msg().expect("esl read");
            if h.get("Content-Type").map(String::as_str) == Some("command/reply") {
                return;
            }
        }
    }

    /// Next event within `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Option<EslEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.w
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let (h, body) = self.read_msg().ok()?;
            if h.get("Content-Type").map(String::as_str) != Some("text/event-plain") {
                continue;
            }
            let (head, rest) = body.split_once("\n\n").unwrap_or((&body, ""));
            return Some(EslEvent {
                headers: parse_headers(head, true),
                body: rest.to_string(),
            });
        }
    }

    /// All events arriving within `d`.
    pub fn drain(&mut self, d: Duration) -> Vec<EslEvent> {
        let deadline = Instant::now() + d;
        let mut v = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next_event(left) {
                Some(e) => v.push(e),
                None => break,
            }
        }
        v
    }
}

/// Originates a loopback customer call: `loopback/<dest>/sp`, A leg parked. Returns
/// (customer A uuid: where we inject audio/DTMF, customer B uuid: the customer channel that
/// enters the dialplan and is bridged to the agent).
pub fn originate_customer(esl: &mut Esl, dest: &str) -> (String, String) {
    let a = new_uuid(esl);
    let r = esl.api(&format!(
        "originate {{origination_uuid={a},loopback_bowout=false}}loopback/{dest}/sp &park()"
    ));
    assert!(r.starts_with("+OK"), "originate failed: {r}");
    let b = wait_var(esl, &a, "other_loopback_leg_uuid");
    (a, b)
}

pub fn new_uuid(esl: &mut Esl) -> String {
    esl.api("create_uuid").trim().to_string()
}

/// Waits until a channel variable is set; returns it.
pub fn wait_var(esl: &mut Esl, uuid: &str, var: &str) -> String {
    var_within(esl, uuid, var, 10_000).unwrap_or_else(|| panic!("{var} never set on {uuid}"))
}

/// The channel variable `var` of `uuid` once it is set, or None after `ms`.
pub fn var_within(esl: &mut Esl, uuid: &str, var: &str, ms: u64) -> Option<String> {
    let deadline = Instant::now() + Duration::from_millis(ms);
    loop {
        let v = esl.api(&format!("uuid_getvar {uuid} {var}"));
        let v = v.trim();
        if !v.is_empty() && v != "_undef_" && !v.starts_with("-ERR") {
            return Some(v.to_string());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The agent legs of a bridged customer B leg: (agent A = bridge peer, agent B = far end).
pub fn agent_legs(esl: &mut Esl, cust_b: &str) -> (String, String) {
    let a = wait_var(esl, cust_b, "bridge_uuid");
    let b = wait_var(esl, &a, "other_loopback_leg_uuid");
    (a, b)
}

/// The agent of a customer B leg that dialled `custnull<N>`: the channel of FreeSWITCH's null
/// endpoint (mod_loopback's `null/`) that the bridge writes the customer's audio to, as it would
/// to an agent's phone. One channel thread instead of the two of a loopback pair.
pub fn null_agent(esl: &mut Esl, cust_b: &str) -> String {
    wait_var(esl, cust_b, "bridge_uuid")
}

/// In-band DTMF for `digits` as a tone_stream (100 ms on, 100 ms off), after 400 ms silence.
pub fn tone_string(digits: &str, on_ms: u32, off_ms: u32) -> String {
    let mut parts = Vec::new();
    for c in digits.chars() {
        let (lo, hi) = match c {
            '1' => (697, 1209),
            '2' => (697, 1336),
            '3' => (697, 1477),
            '4' => (770, 1209),
            '5' => (770, 1336),
            '6' => (770, 1477),
            '7' => (852, 1209),
            '8' => (852, 1336),
            '9' => (852, 1477),
            '*' => (941, 1209),
            '0' => (941, 1336),
            '#' => (941, 1477),
            _ => panic!("no tone for {c}"),
        };
        parts.push(format!("%({on_ms},{off_ms},{lo},{hi})"));
    }
    format!(
        "file_string://silence_stream://400!tone_stream://{}",
        parts.join(";")
    )
}

/// Plays in-band tones INTO the customer channel (written on the A leg, read by B) and waits
/// until they have been played.
pub fn play_tones(esl: &mut Esl, cust_a: &str, digits: &str) {
    let r = esl.api(&format!(
        "uuid_broadcast {cust_a} {} aleg",
        tone_string(digits, 100, 100)
    ));
    assert!(r.starts_with("+OK"), "uuid_broadcast failed: {r}");
    std::thread::sleep(Duration::from_millis(400 + 200 * digits.len() as u64 + 600));
}

/// Waits until the secure session on `uuid` has moved past `field` (captured: the next field
/// is active or the session is complete). `play_tones` is timed by FreeSWITCH's own playback,
/// which a loaded machine can start late: keys sent next (out-of-band) must not interleave with
/// the tones still playing. Panics with the masked status (field, length, attempt) when the
/// field is not done within 15 s, which tells a lost or extra in-band key from a slow one.
pub fn wait_field_done(esl: &mut Esl, uuid: &str, field: &str) {
    if let Err(st) = try_wait_field_done(esl, uuid, field) {
        panic!("{field} not captured within 15 s; masked status: {st}");
    }
}

/// [`wait_field_done`] without the panic: `Err` holds the masked status.
pub fn try_wait_field_done(esl: &mut Esl, uuid: &str, field: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = esl.api(&format!("uuid_secure_pay {uuid} status json"));
        let v: serde_json::Value = serde_json::from_str(st.trim()).unwrap_or_default();
        let captured = v["captured"].as_str().unwrap_or("");
        if captured.split(',').any(|f| f == field) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(st);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Keys `pan#` in-band into the customer (`play_tones` on `cust_a`) and waits until the secure
/// session on `uuid` has the card number. On a loaded machine FreeSWITCH's timer-driven RTP read
/// can drop a 100 ms tone before any media bug sees it (docs/capture.md, "FreeSWITCH under
/// load"); the card then fails Luhn or stays short. As on a real call, the agent's `restart` and
/// a second keying recover: printed as RETRY with the masked status of the first try. A second
/// failure panics. Every leak judge of the caller still sees both keyings.
pub fn key_card_in_band(esl: &mut Esl, cust_a: &str, uuid: &str, pan: &str) {
    let field = "payment-card-number";
    let done = keyed_with_one_retry(
        esl,
        uuid,
        &mut |esl| play_tones(esl, cust_a, &format!("{pan}#")),
        &mut |esl| try_wait_field_done(esl, uuid, field).ok(),
    );
    if done.is_none() {
        panic!(
            "{field} not captured within 15 s after a second keying; masked status: {}",
            esl.api(&format!("uuid_secure_pay {uuid} status json"))
        );
    }
}

/// Out-of-band keys from the leg `uuid`, one at a time, `gap_ms` apart (loopback queues a whole
/// string at once, which no keypad does).
pub fn send_keys(esl: &mut Esl, uuid: &str, digits: &str, gap_ms: u64) {
    send_keys_held(esl, uuid, digits, 100, gap_ms);
}

/// [`send_keys`] with each key held `on_ms`.
pub fn send_keys_held(esl: &mut Esl, uuid: &str, digits: &str, on_ms: u64, gap_ms: u64) {
    for d in digits.chars() {
        let r = esl.api(&format!("uuid_send_dtmf {uuid} {d}@{on_ms}"));
        assert!(r.starts_with("+OK"), "uuid_send_dtmf: {r}");
        std::thread::sleep(Duration::from_millis(gap_ms));
    }
}

/// Keys with `key` and waits with `done`; when `done` gives nothing, recovers once the way an
/// agent would on a call: prints RETRY with the masked status of `uuid` (field, length,
/// attempt), sends `uuid_secure_pay <uuid> restart` and keys and waits again. A loaded machine
/// now and then loses keys on a loopback pair before any media bug sees them (docs/capture.md,
/// "FreeSWITCH under load"); the suites that use this are about something else (events, memory,
/// the agent's powers), and every judge of theirs still sees both keyings.
pub fn keyed_with_one_retry<T>(
    esl: &mut Esl,
    uuid: &str,
    key: &mut dyn FnMut(&mut Esl),
    done: &mut dyn FnMut(&mut Esl) -> Option<T>,
) -> Option<T> {
    key(esl);
    if let Some(v) = done(esl) {
        return Some(v);
    }
    eprintln!(
        "RETRY keying after: {}",
        esl.api(&format!("uuid_secure_pay {uuid} status json"))
    );
    let r = esl.api(&format!("uuid_secure_pay {uuid} restart"));
    assert!(r.starts_with("+OK"), "restart: {r}");
    key(esl);
    done(esl)
}

/// Decodes a recording with multimon-ng (independent judge). Returns the digits in order,
/// with immediate repeats collapsed (multimon-ng sometimes reports one press twice).
pub fn multimon_digits(wav: &Path) -> String {
    assert!(wav.is_file(), "recording {} missing", wav.display());
    let raw = wav.with_extension("raw");
    let st = Command::new("sox")
        .arg(wav)
        .args([
            "-t",
            "raw",
            "-e",
            "signed-integer",
            "-b",
            "16",
            "-r",
            "22050",
            "-c",
            "1",
        ])
        .arg(&raw)
        .status()
        .expect("sox (apt install sox)");
    assert!(st.success(), "sox failed on {}", wav.display());
    let out = Command::new("multimon-ng")
        .args(["-q", "-c", "-a", "DTMF", "-t", "raw"])
        .arg(&raw)
        .output()
        .expect("multimon-ng (apt install multimon-ng)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut s = String::new();
    for line in text.lines() {
        if let Some(d) = line.trim().strip_prefix("DTMF: ") {
            s.push_str(d.trim());
        }
    }
    let mut collapsed = String::new();
    for c in s.chars() {
        if !collapsed.ends_with(c) {
            collapsed.push(c);
        }
    }
    collapsed
}

/// Raw multimon-ng digit count (no collapsing), for "no digits at all" assertions.
pub fn multimon_any(wav: &Path) -> usize {
    multimon_digits(wav).len()
}

/// Runs the Node `modesl` ESL client (not ours) subscribed to CUSTOM secure_pay::* for the
/// life of the returned child; its stdout is one JSON object per event.
pub struct NodeListener {
    child: Child,
    out: PathBuf,
}

/// Installs `modesl` from npm with `npm ci` (the versions pinned in
/// tests/freeswitch_support/package-lock.json) into tests/freeswitch_support/node_modules, once.
pub fn node_modesl_dir() -> PathBuf {
    let dir = repo_root().join("tests/freeswitch_support");
    if !dir.join("node_modules/modesl").is_dir() {
        let st = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm (apt install npm)");
        assert!(st.success(), "npm ci (modesl) failed in {}", dir.display());
    }
    dir
}

impl NodeListener {
    pub fn start(fs: &FreeSwitch) -> NodeListener {
        let dir = node_modesl_dir();
        let script = repo_root().join("tests/freeswitch_support/esl_listener.js");
        let out = fs.dir.join(format!(
            "node-events-{}.jsonl",
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let f = std::fs::File::create(&out).expect("create");
        let child = Command::new("node")
            .arg(script)
            .arg(fs.esl_port.to_string())
            .env("NODE_PATH", dir.join("node_modules"))
            .stdout(f)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node");
        // Wait for its "ready" line.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t = std::fs::read_to_string(&out).unwrap_or_default();
            if t.contains("\"ready\"") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node modesl listener did not connect"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        NodeListener { child, out }
    }

    /// The events received so far (each a JSON object as text).
    pub fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("Event-Subclass").is_some())
            .collect()
    }
}

impl Drop for NodeListener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An agent desktop on the npm `modesl` ESL client (tests/freeswitch_support/esl_agent.js):
/// plain CUSTOM secure_pay::* events, `bgapi` commands written to its stdin.
pub struct EslAgent {
    child: Child,
    stdin: std::process::ChildStdin,
    out: PathBuf,
}

impl EslAgent {
    pub fn start(fs: &FreeSwitch) -> EslAgent {
        let dir = node_modesl_dir();
        let out = fs.dir.join(format!(
            "esl-agent-{}.jsonl",
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let f = std::fs::File::create(&out).expect("create");
        let mut child = Command::new("node")
            .arg(dir.join("esl_agent.js"))
            .arg(fs.esl_port.to_string())
            .env("NODE_PATH", dir.join("node_modules"))
            .stdin(Stdio::piped())
            .stdout(f)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node");
        let stdin = child.stdin.take().expect("stdin");
        let a = EslAgent { child, stdin, out };
        a.wait_for(Duration::from_secs(20), |v| v.get("ready").is_some())
            .expect("modesl agent did not connect");
        a
    }

    /// Everything it printed so far.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The events (header maps) received so far.
    pub fn events(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        self.lines()
            .into_iter()
            .filter_map(|v| v.get("event").and_then(|e| e.as_object()).cloned())
            .collect()
    }

    pub fn wait_for(
        &self,
        within: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = self.lines().into_iter().find(|v| pred(v)) {
                return Some(v);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `bgapi <cmd>` and returns the job's body (from BACKGROUND_JOB).
    pub fn bgapi(&mut self, cmd: &str) -> String {
        let is_it = |v: &serde_json::Value| v.get("bgapi").and_then(|c| c.as_str()) == Some(cmd);
        let before = self.lines().iter().filter(|v| is_it(v)).count();
        writeln!(self.stdin, "{cmd}").expect("write to node");
        self.stdin.flush().expect("flush");
        let deadline = Instant::now() + Duration::from_secs(10);
        let v = loop {
            let got: Vec<_> = self.lines().into_iter().filter(|v| is_it(v)).collect();
            if got.len() > before {
                break got[before].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no BACKGROUND_JOB for bgapi {cmd}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            v["job"].as_str().is_some_and(|j| !j.is_empty()),
            "BACKGROUND_JOB without Job-UUID: {v}"
        );
        v["body"].as_str().unwrap_or("").to_string()
    }
}

impl Drop for EslAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Originates `sofia/sp/<dest>@127.0.0.1:<port>` (A leg parked, `dtmf_type` as given) and finds
/// the inbound SIP leg (the customer channel FreeSWITCH bridges to the agent): (A leg, inbound).
pub fn originate_sip(
    fs: &FreeSwitch,
    esl: &mut Esl,
    dest: &str,
    dtmf_type: &str,
) -> (String, String) {
    let mut watch = fs.esl();
    watch.subscribe("plain CHANNEL_ANSWER");
    let a = new_uuid(esl);
    let r = esl.api(&format!(
        "originate {{origination_uuid={a},dtmf_type={dtmf_type},absolute_codec_string=PCMU}}sofia/sp/{dest}@127.0.0.1:{} &park()",
        fs.sip_port
    ));
    assert!(r.starts_with("+OK"), "originate over SIP failed: {r}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(e) = watch.next_event(Duration::from_millis(500)) {
            if e.get("Caller-Destination-Number") == Some(dest)
                && e.get("Call-Direction") == Some("inbound")
                && e.get("Channel-Name")
                    .is_some_and(|n| n.starts_with("sofia/"))
            {
                return (a, e.get("Unique-ID").unwrap_or_default().to_string());
            }
        }
    }
    panic!("inbound SIP leg for {dest} not seen");
}

/// `uuid_record <uuid> <verb> <path>`, which must answer +OK.
/// Peak amplitude (0..1) of a recording, by `sox -n stat` (sox's own measurement).
pub fn peak(wav: &Path) -> f64 {
    let out = Command::new("sox")
        .arg(wav)
        .args(["-n", "stat"])
        .output()
        .expect("sox (apt install sox)");
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find(|l| l.starts_with("Maximum amplitude"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("sox stat on {}: {text}", wav.display()))
}

pub fn record(esl: &mut Esl, uuid: &str, verb: &str, path: &std::path::Path) {
    let r = esl.api(&format!("uuid_record {uuid} {verb} {}", path.display()));
    assert!(r.starts_with("+OK"), "uuid_record {verb}: {r}");
}

/// Compiles the test-only module `tests/freeswitch_support/fault/mod_sp_fault.c` against this
/// FreeSWITCH's headers into the instance's module dir and loads it (never installed).
pub fn load_fault_module(fs: &FreeSwitch, prefix: &Path) {
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/freeswitch_support/fault/mod_sp_fault.c");
    let out = fs.dir.join("mod/mod_sp_fault.so");
    let st = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-I"])
        .arg(prefix.join("include/freeswitch"))
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .status()
        .expect("cc (apt install gcc)");
    assert!(st.success(), "building {}", src.display());
    let r = fs.esl().api("load mod_sp_fault");
    assert!(r.contains("+OK"), "load mod_sp_fault: {r}");
}
