//! Test support for the Asterisk integration tests: a private Asterisk 22 instance in the
//! project's chroot (scripts/setup-asterisk + scripts/asterisk-run), started on loopback with
//! its own dirs and AMI port, stopped by a `Drop` guard that ends only the PID it started; an
//! AMI client; and the independent DTMF judges (sox + multimon-ng, Debian; spandsp `dtmf_rx`
//! through the shared judge support in `tests/judges/`).
#![allow(dead_code)]

/// The shared independent judges (multimon-ng, spandsp `dtmf_rx` via `tests/judges/spandsp_rx.c`).
#[path = "../judges/mod.rs"]
pub mod judges;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const DEFAULT_ROOT: &str = "/var/lib/securepay-asterisk-root";

/// The repository root (also from the agent crate's tests in agent/tests, which share this
/// harness).
pub fn repo() -> PathBuf {
    let m = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if m.join("build.rs").is_file() {
        m
    } else {
        m.parent().map(Path::to_path_buf).unwrap_or(m)
    }
}

pub fn chroot_root() -> PathBuf {
    std::env::var_os("SECUREPAY_ASTERISK_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
}

/// The module built together with this test binary: target/<profile>/deps/libsecure_pay.so
/// (what `cargo test` builds) or target/<profile>/libsecure_pay.so (`cargo build`), the newer.
pub fn module_path() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for p in [
        deps.join("libsecure_pay.so"),
        deps.parent().unwrap().join("libsecure_pay.so"),
    ] {
        if let Ok(t) = std::fs::metadata(&p).and_then(|m| m.modified()) {
            if best.as_ref().map_or(true, |(bt, _)| t > *bt) {
                best = Some((t, p));
            }
        }
    }
    best.map(|(_, p)| p)
        .expect("libsecure_pay.so not found: build with `cargo test --release --features asterisk`")
}

fn run_script(args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut c = Command::new(repo().join("scripts/asterisk-run"));
    c.args(args).stdin(Stdio::null());
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().expect("run scripts/asterisk-run");
    assert!(
        out.status.success(),
        "asterisk-run {:?} failed: {}{}",
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Modules every test instance loads (no SIP/IAX/HTTP listeners unless a test adds them).
pub const BASE_MODULES: &str = "pbx_config.so app_dial.so app_senddtmf.so app_playtones.so \
app_mixmonitor.so app_exec.so app_verbose.so app_echo.so app_stack.so app_userevent.so \
func_channel.so func_strings.so func_logic.so func_global.so format_wav.so format_pcm.so \
codec_ulaw.so codec_alaw.so res_timing_timerfd.so bridge_simple.so bridge_builtin_features.so \
bridge_holding.so";

pub struct Instance {
    pub dir: PathBuf,
    pub ami_port: u16,
    pub pid: u32,
}

impl Instance {
    /// Creates and starts an instance with `extensions` as extensions.conf, `extra` config
    /// files (name, content) and `modules` (space separated) plus res_secure_pay.so loaded
    /// with `module load` after start.
    pub fn start(name: &str, extensions: &str, extra: &[(&str, &str)], modules: &str) -> Instance {
        Self::start_with(name, extensions, extra, modules, true)
    }

    /// Like [`Instance::start`]; `with_module = false` starts a plain Asterisk (e.g. a SIP
    /// peer standing for the customer's phone).
    pub fn start_with(
        name: &str,
        extensions: &str,
        extra: &[(&str, &str)],
        modules: &str,
        with_module: bool,
    ) -> Instance {
        assert!(
            chroot_root().join("usr/sbin/asterisk").is_file(),
            "no Asterisk chroot at {}: run scripts/setup-asterisk",
            chroot_root().display()
        );
        let tmp = std::env::temp_dir().join(format!("sp-ext-{name}-{}.conf", std::process::id()));
        std::fs::write(&tmp, extensions).unwrap();
        let dir = run_script(
            &["new", name],
            &[
                ("AST_DIALPLAN", tmp.to_str().unwrap()),
                ("AST_MODULES", modules),
            ],
        );
        let _ = std::fs::remove_file(&tmp);
        let dir = PathBuf::from(dir.trim());
        // "@INST@" in an extra file = the instance dir as Asterisk sees it (inside the chroot)
        let inside = dir
            .strip_prefix(chroot_root())
            .map(|p| format!("/{}", p.display()))
            .unwrap();
        for (f, content) in extra {
            std::fs::write(dir.join("etc").join(f), content.replace("@INST@", &inside)).unwrap();
        }
        // installed under the name the loader keys it by (module name = file name)
        let so = dir.join("modules/res_secure_pay.so");
        let _ = std::fs::remove_file(&so);
        std::fs::copy(module_path(), &so).expect("install res_secure_pay.so");
        // its XML documentation, where Asterisk loads third-party docs at start
        std::fs::copy(
            repo().join("dialplan/asterisk/secure_pay-en_US.xml"),
            dir.join("data/documentation/thirdparty/secure_pay-en_US.xml"),
        )
        .expect("install secure_pay-en_US.xml");
        run_script(&["start", dir.to_str().unwrap()], &[]);
        let info = run_script(&["info", dir.to_str().unwrap()], &[]);
        let get = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or("")
                .to_owned()
        };
        let inst = Instance {
            dir,
            ami_port: get("ami_port").parse().expect("ami port"),
            pid: get("pid").parse().expect("pid"),
        };
        if with_module {
            let out = inst.cli("module load res_secure_pay.so");
            assert!(out.contains("Loaded"), "module load: {out}");
        }
        inst
    }

    pub fn cli(&self, cmd: &str) -> String {
        run_script(&["cli", self.dir.to_str().unwrap(), cmd], &[])
    }

    pub fn monitor(&self, file: &str) -> PathBuf {
        self.dir.join("spool/monitor").join(file)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/full")).unwrap_or_default()
    }

    pub fn ami(&self) -> Ami {
        Ami::connect(self.ami_port)
    }

    pub fn is_running(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // `asterisk-run stop` ends only this instance's PID (from its own pid file); `rm`
        // deletes only this instance's directory. Keep the dir when SECUREPAY_KEEP is set.
        let d = self.dir.to_str().unwrap_or("").to_owned();
        let _ = Command::new(repo().join("scripts/asterisk-run"))
            .args(["stop", &d])
            .output();
        if std::env::var_os("SECUREPAY_KEEP").is_none() {
            let _ = Command::new(repo().join("scripts/asterisk-run"))
                .args(["rm", &d])
                .output();
        }
    }
}

/// One AMI message (response or event) as ordered headers.
#[derive(Clone, Debug, Default)]
pub struct Msg(pub Vec<(String, String)>);

impl Msg {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(kk, _)| kk.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
    pub fn event(&self) -> Option<&str> {
        self.get("Event")
    }
    pub fn text(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}: {v}\n")).collect()
    }
}

struct Shared {
    msgs: Mutex<Vec<Msg>>,
    cv: Condvar,
}

pub struct Ami {
    w: TcpStream,
    shared: Arc<Shared>,
    next_id: u64,
}

impl Ami {
    pub fn connect(port: u16) -> Ami {
        Self::connect_as(port, "test", "test")
    }

    /// Connects and logs in as `user` (panics if the login fails).
    pub fn connect_as(port: u16, user: &str, secret: &str) -> Ami {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("AMI connect");
        let r = s.try_clone().unwrap();
        let shared = Arc::new(Shared {
            msgs: Mutex::new(Vec::new()),
            cv: Condvar::new(),
        });
        let sh = shared.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(r);
            let mut line = String::new();
            let mut cur = Msg::default();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let l = line.trim_end_matches(['\r', '\n']);
                if l.is_empty() {
                    if !cur.0.is_empty() {
                        sh.msgs.lock().unwrap().push(std::mem::take(&mut cur));
                        sh.cv.notify_all();
                    }
                } else if let Some((k, v)) = l.split_once(':') {
                    cur.0.push((k.trim().to_owned(), v.trim().to_owned()));
                }
            }
        });
        let mut a = Ami {
            w: s,
            shared,
            next_id: 1,
        };
        let r = a.action(&[("Action", "Login"), ("Username", user), ("Secret", secret)]);
        assert_eq!(
            r.get("Response"),
            Some("Success"),
            "AMI login: {}",
            r.text()
        );
        a
    }

    /// Sends an action and waits for its response (matched by ActionID).
    pub fn action(&mut self, headers: &[(&str, &str)]) -> Msg {
        let id = format!("sp{}", self.next_id);
        self.next_id += 1;
        let mut s = String::new();
        for (k, v) in headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str(&format!("ActionID: {id}\r\n\r\n"));
        self.w.write_all(s.as_bytes()).unwrap();
        self.wait_for(Duration::from_secs(60), |m| {
            m.get("ActionID") == Some(id.as_str()) && m.get("Response").is_some()
        })
        .unwrap_or_else(|| panic!("no AMI response to {headers:?}"))
    }

    /// Sends an action with the caller's `ActionID` and returns without waiting.
    pub fn send_with_id(&mut self, headers: &[(&str, &str)], id: &str) {
        let mut s = String::new();
        for (k, v) in headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str(&format!("ActionID: {id}\r\n\r\n"));
        self.w.write_all(s.as_bytes()).unwrap();
    }

    /// Waits for a message matching `pred` (searching everything received so far too).
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Msg) -> bool) -> Option<Msg> {
        let end = Instant::now() + timeout;
        let mut g = self.shared.msgs.lock().unwrap();
        // The list only grows: each wake-up looks at the messages that arrived since the last
        // one. Scanning all of them on every message (tens of thousands in the 200-call load
        // test) held the lock long enough to stall the reader thread, and with it Asterisk's
        // writes to this session: an Originate's response once took over 60 s.
        let mut seen = 0;
        loop {
            if let Some(m) = g[seen..].iter().find(|m| pred(m)) {
                return Some(m.clone());
            }
            seen = g.len();
            let now = Instant::now();
            if now >= end {
                return None;
            }
            g = self.shared.cv.wait_timeout(g, end - now).unwrap().0;
        }
    }

    pub fn wait_event(&self, timeout: Duration, name: &str, kv: &[(&str, &str)]) -> Option<Msg> {
        self.wait_for(timeout, |m| {
            m.event() == Some(name) && kv.iter().all(|(k, v)| m.get(k) == Some(*v))
        })
    }

    pub fn all(&self) -> Vec<Msg> {
        self.shared.msgs.lock().unwrap().clone()
    }

    pub fn events(&self, name: &str) -> Vec<Msg> {
        self.all()
            .into_iter()
            .filter(|m| m.event() == Some(name))
            .collect()
    }
}

/// DTMF digits an independent decoder (multimon-ng, Debian) finds in a WAV file, after
/// resampling to 22050 Hz with sox.
pub fn multimon_digits(wav: &Path) -> String {
    assert!(wav.is_file(), "recording {} missing", wav.display());
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "sox '{}' -t raw -r 22050 -e signed-integer -b 16 -c 1 - | multimon-ng -q -a DTMF -t raw -",
            wav.display()
        ))
        .output()
        .expect("sox | multimon-ng");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("DTMF: "))
        .collect::<Vec<_>>()
        .join("")
}

/// Second independent judge: spandsp `dtmf_rx` (Debian libspandsp-dev, driven by the shared
/// `tests/judges/spandsp_rx.c` harness) on a MixMonitor recording converted to 8 kHz by sox.
/// Returns (spandsp defaults, permissive: twist 14/14 dB, threshold -50 dBm0).
pub fn spandsp_digits(wav: &Path) -> (String, String) {
    assert!(wav.is_file(), "recording {} missing", wav.display());
    let pcm = judges::load_with_sox(wav, 8000);
    (
        judges::spandsp_8k(&pcm, false),
        judges::spandsp_8k(&pcm, true),
    )
}

/// `Playtones` argument that plays `digits` as in-band DTMF (tone_ms on, gap_ms off each).
pub fn playtones_arg(digits: &str, tone_ms: u32, gap_ms: u32) -> String {
    const ROW: [u32; 4] = [697, 770, 852, 941];
    const COL: [u32; 4] = [1209, 1336, 1477, 1633];
    const KEYS: [&str; 4] = ["123A", "456B", "789C", "*0#D"];
    let mut parts = Vec::new();
    for c in digits.chars() {
        let (r, k) = KEYS
            .iter()
            .enumerate()
            .find_map(|(r, row)| row.find(c).map(|k| (r, k)))
            .expect("DTMF key");
        parts.push(format!("!{}+{}/{tone_ms}", ROW[r], COL[k]));
        parts.push(format!("!0/{gap_ms}"));
    }
    parts.join(",")
}

/// Milliseconds `playtones_arg` plays.
pub fn playtones_ms(digits: &str, tone_ms: u32, gap_ms: u32) -> u32 {
    digits.chars().count() as u32 * (tone_ms + gap_ms)
}

pub fn headers_of(msgs: &[Msg]) -> HashMap<String, Vec<String>> {
    let mut h: HashMap<String, Vec<String>> = HashMap::new();
    for m in msgs {
        for (k, v) in &m.0 {
            h.entry(k.clone()).or_default().push(v.clone());
        }
    }
    h
}

/// A dialplan context `sp` for scripted calls. `inbound` is the customer's leg in the PBX
/// (recorded as call-<CALLNAME>.wav when RECORD is set), dialling `agent` (recorded as
/// agent-<CALLNAME>.wav). `customer` is a scripted phone: each time GLOBAL(SPSTEP_<call>)
/// goes up it sends GLOBAL(SPKEYS_<call>) as DTMF frames and plays GLOBAL(SPTONES_<call>) as
/// in-band tones for GLOBAL(SPWAIT_<call>) seconds, then reports UserEvent SPStep.
/// With AUTOKEYS/AUTOTONES/AUTOWAIT(/AUTOKEYS2) set on the call, the phone waits for
/// GLOBAL(SPGO)=1 (polling every 0.5 s), keys frames, tones, frames, reports UserEvent SPAuto,
/// and hangs up if AUTOHANGUP=1 (used by the load test and the CPU bench).
/// `START_APP` (if set on the call) runs on the inbound leg before the Dial (e.g.
/// `SecurePay(...)`).
/// Labels must be unique within an extension: Goto/GotoIf jump to the FIRST priority with
/// the label, so a duplicate silently sends the step loop into the AUTO path.
pub fn phone_dialplan() -> String {
    r#"[general]
[globals]
[sp]
exten => inbound,1,Answer()
 same => n,ExecIf($["${RECORD}" != ""]?MixMonitor(call-${CALLNAME}.wav))
 same => n,UserEvent(SPInbound,Call: ${CALLNAME},Chan: ${CHANNEL})
 same => n,GotoIf($["${START_APP}" = ""]?dial)
 same => n,SecurePay(${START_OPTS})
 same => n,UserEvent(SPStarted,Call: ${CALLNAME},Status: ${SECUREPAY_STATUS},Error: ${SECUREPAY_ERROR})
 same => n(dial),Dial(Local/agent@sp/n)
 same => n,Hangup()

exten => agent,1,Answer()
 same => n,ExecIf($["${RECORD}" != ""]?MixMonitor(agent-${CALLNAME}.wav))
 same => n,UserEvent(SPAgent,Call: ${CALLNAME},Chan: ${CHANNEL})
 same => n,Wait(300)
 same => n,Hangup()

exten => customer,1,Answer()
 same => n,Set(DONE=0)
 same => n,GotoIf($["${AUTOKEYS}${AUTOTONES}" = ""]?loop)
 same => n(go),GotoIf($["${GLOBAL(SPGO)}" = "1"]?keys)
 same => n,Wait(0.5)
 same => n,Goto(go)
 same => n(keys),GotoIf($["${AUTOKEYS}" = ""]?autotones)
 same => n,SendDTMF(${AUTOKEYS},120,100)
 same => n(autotones),GotoIf($["${AUTOTONES}" = ""]?keys2)
 same => n,Playtones(${AUTOTONES})
 same => n,Wait(${AUTOWAIT})
 same => n,StopPlaytones()
 same => n(keys2),GotoIf($["${AUTOKEYS2}" = ""]?autodone)
 same => n,SendDTMF(${AUTOKEYS2},120,100)
 same => n(autodone),UserEvent(SPAuto,Call: ${CALLNAME})
 same => n,GotoIf($["${AUTOHANGUP}" = "1"]?hang)
 same => n,Wait(600)
 same => n(hang),Hangup()
 same => n(loop),GotoIf($[0${GLOBAL(SPSTEP_${CALLNAME})} > ${DONE}]?act)
 same => n,Wait(0.1)
 same => n,Goto(loop)
 same => n(act),Set(DONE=$[${DONE} + 1])
 same => n,GotoIf($["${GLOBAL(SPKEYS_${CALLNAME})}" = ""]?tones)
 same => n,SendDTMF(${GLOBAL(SPKEYS_${CALLNAME})},120,100)
 same => n(tones),GotoIf($["${GLOBAL(SPTONES_${CALLNAME})}" = ""]?done)
 same => n,Playtones(${GLOBAL(SPTONES_${CALLNAME})})
 same => n,Wait(${GLOBAL(SPWAIT_${CALLNAME})})
 same => n,StopPlaytones()
 same => n(done),UserEvent(SPStep,Call: ${CALLNAME},Step: ${DONE})
 same => n,Goto(loop)

exten => stopper,1,Answer()
 same => n,StopSecurePay()
 same => n,UserEvent(SPStopper,Status: ${SECUREPAY_STATUS})
 same => n,Hangup()
"#
    .to_owned()
}

/// One scripted call through [`phone_dialplan`].
pub struct Call {
    pub name: String,
    /// The customer's leg in the PBX (where secure mode runs).
    pub customer: String,
    /// The agent's phone channel (`Local/agent@sp-xxxx;2`).
    pub agent: String,
    step: u32,
}

pub const WAIT: Duration = Duration::from_secs(30);

impl Call {
    /// Originates a call; `vars` are extra `__VAR=value` settings (e.g. RECORD=1).
    pub fn originate(ami: &mut Ami, name: &str, vars: &[(&str, &str)]) -> Call {
        Self::originate_nowait(ami, name, vars);
        Self::wait_up(ami, name)
    }

    pub fn originate_nowait(ami: &mut Ami, name: &str, vars: &[(&str, &str)]) {
        Self::originate_channel(ami, "Local/customer@sp", name, vars)
    }

    /// Originates `channel` (the customer's phone, e.g. `PJSIP/inbound-c1@pbx`) running the
    /// scripted `customer` extension.
    pub fn originate_channel(ami: &mut Ami, channel: &str, name: &str, vars: &[(&str, &str)]) {
        let mut v = format!("__CALLNAME={name}");
        for (k, val) in vars {
            v.push_str(&format!(",__{k}={val}"));
        }
        let r = ami.action(&[
            ("Action", "Originate"),
            ("Channel", channel),
            ("Context", "sp"),
            (
                "Exten",
                if channel.starts_with("Local/") {
                    "inbound"
                } else {
                    "customer"
                },
            ),
            ("Priority", "1"),
            ("Variable", &v),
            ("Async", "true"),
        ]);
        assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    }

    pub fn wait_up(ami: &Ami, name: &str) -> Call {
        let inbound = ami
            .wait_event(
                Duration::from_secs(90),
                "UserEvent",
                &[("UserEvent", "SPInbound"), ("Call", name)],
            )
            .unwrap_or_else(|| panic!("call {name}: no inbound leg"));
        let agent = ami
            .wait_event(
                Duration::from_secs(90),
                "UserEvent",
                &[("UserEvent", "SPAgent"), ("Call", name)],
            )
            .unwrap_or_else(|| panic!("call {name}: agent did not answer"));
        Call {
            name: name.to_owned(),
            customer: inbound.get("Chan").unwrap_or("").to_owned(),
            agent: agent.get("Chan").unwrap_or("").to_owned(),
            step: 0,
        }
    }

    /// A call whose customer leg runs something else than `inbound` (e.g. an IVR context):
    /// only the scripted phone (`key`) is used.
    pub fn for_name(name: &str, customer: &str) -> Call {
        Call {
            name: name.to_owned(),
            customer: customer.to_owned(),
            agent: String::new(),
            step: 0,
        }
    }

    /// Agent-side channel prefix (`Local/agent@sp-xxxx`, both halves).
    pub fn agent_prefix(&self) -> &str {
        self.agent.trim_end_matches(";2")
    }

    /// Makes the customer play `tones` (a `Playtones` argument, e.g. `1000` for a steady
    /// 1 kHz tone) for `secs` seconds (no wait; [`Call::wait_keyed`] waits for the end).
    pub fn play_nowait(&mut self, ami: &mut Ami, tones: &str, secs: f64) {
        self.step += 1;
        for (k, v) in [
            ("SPKEYS", String::new()),
            ("SPTONES", tones.to_owned()),
            ("SPWAIT", format!("{secs:.2}")),
            ("SPSTEP", self.step.to_string()),
        ] {
            let r = ami.action(&[
                ("Action", "Setvar"),
                ("Variable", &format!("GLOBAL({k}_{})", self.name)),
                ("Value", &v),
            ]);
            assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
        }
    }

    /// Makes the customer key `oob` as DTMF frames, then `inband` as tones (no wait).
    pub fn key_nowait(&mut self, ami: &mut Ami, oob: &str, inband: &str) {
        self.step += 1;
        let tones = if inband.is_empty() {
            String::new()
        } else {
            playtones_arg(inband, 120, 120)
        };
        let wait = f64::from(playtones_ms(inband, 120, 120) + 300) / 1000.0;
        for (k, v) in [
            ("SPKEYS", oob.to_owned()),
            ("SPTONES", tones),
            ("SPWAIT", format!("{wait:.2}")),
            ("SPSTEP", self.step.to_string()),
        ] {
            let r = ami.action(&[
                ("Action", "Setvar"),
                ("Variable", &format!("GLOBAL({k}_{})", self.name)),
                ("Value", &v),
            ]);
            assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
        }
    }

    pub fn wait_keyed(&self, ami: &Ami) {
        ami.wait_event(
            Duration::from_secs(120),
            "UserEvent",
            &[
                ("UserEvent", "SPStep"),
                ("Call", &self.name),
                ("Step", &self.step.to_string()),
            ],
        )
        .unwrap_or_else(|| {
            panic!(
                "call {}: customer did not finish step {}",
                self.name, self.step
            )
        });
    }

    pub fn key(&mut self, ami: &mut Ami, oob: &str, inband: &str) {
        self.key_nowait(ami, oob, inband);
        self.wait_keyed(ami);
    }

    /// AMI `SecurePay` on the customer leg.
    pub fn securepay(&self, ami: &mut Ami, extra: &[(&str, &str)]) -> Msg {
        let mut h = vec![("Action", "SecurePay"), ("Channel", self.customer.as_str())];
        h.extend_from_slice(extra);
        ami.action(&h)
    }
}

/// SecurePay* events of one channel, in order.
pub fn sp_events_of(ami: &Ami, chan: &str) -> Vec<Msg> {
    ami.all()
        .into_iter()
        .filter(|m| m.event().is_some_and(|e| e.starts_with("SecurePay")))
        .filter(|m| m.get("Channel") == Some(chan))
        .collect()
}

/// True for AMI messages produced by the scripted customer PHONE itself (its own dialplan
/// lines and the test's global variables that script it): they carry the digits the phone is
/// about to key, by construction. Everything else (the PBX leg, the agent, SecurePay events)
/// must never carry them.
pub fn is_test_phone_msg(m: &Msg) -> bool {
    m.event() == Some("VarSet") && m.get("Channel") == Some("none")
        || m.get("Channel")
            .is_some_and(|c| c.starts_with("Local/customer@") && c.ends_with(";2"))
}

// ---------------------------------------------------------------------------------------------
// A loopback HTTPS payment connector for the submit tests (test CA generated with rcgen).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::Read;
use std::net::TcpListener;

pub struct Pki {
    pub ca_pem: String,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

pub fn pki() -> Pki {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "secure_pay asterisk test CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = p.self_signed(&ca_key).unwrap();
    let s = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = s.signed_by(&key, &ca, &ca_key).unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_cert: cert.der().clone(),
        server_key: key.serialize_der(),
    }
}

/// A one-purpose HTTPS server on 127.0.0.1: records each JSON body and answers `reply`.
pub fn https_server(pki: &Pki, reply: &'static str) -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    https_server_slow(pki, reply, Duration::ZERO)
}

/// [`https_server`] that waits `delay` after reading a request before it answers (a slow
/// processor). Each recorded body also gets `"_idempotency_key"`: the request's
/// `Idempotency-Key` header (null if absent).
pub fn https_server_slow(
    pki: &Pki,
    reply: &'static str,
    delay: Duration,
) -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.server_cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.clone())),
        )
        .unwrap();
    let cfg = Arc::new(cfg);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                match tls.read(&mut chunk) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break Some(buf[end + 4..end + 4 + len].to_vec());
                    }
                }
            };
            if let Some(b) = body {
                let head = String::from_utf8_lossy(&buf).to_string();
                let key = head
                    .split("\r\n\r\n")
                    .next()
                    .unwrap_or("")
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.trim()
                            .eq_ignore_ascii_case("idempotency-key")
                            .then(|| v.trim().to_string())
                    });
                if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&b) {
                    v["_idempotency_key"] = key.map_or(serde_json::Value::Null, Into::into);
                    g.lock().unwrap().push(v);
                }
                std::thread::sleep(delay);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = tls.write_all(resp.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        }
    });
    (port, got)
}

/// logger.conf for load tests: no verbose lines in the full log (100 calls x dialplan steps).
pub const QUIET_LOGGER: &str =
    "[general]\ndateformat = %F %T.%3q\n[logfiles]\nfull => notice,warning,error\n";

/// PJSIP modules for the SIP suites (G.711 over RTP, RFC 4733, SIP INFO).
pub const SIP_MODULES: &str = "res_pjproject.so res_sorcery_config.so res_sorcery_memory.so \
res_sorcery_astdb.so res_pjsip.so res_pjsip_session.so res_pjsip_sdp_rtp.so res_rtp_asterisk.so \
chan_pjsip.so res_pjsip_pubsub.so res_pjsip_endpoint_identifier_ip.so res_pjsip_dtmf_info.so";

/// A free UDP port on loopback (bound and released: a race with another process is possible
/// but harmless in these tests, which start their own instances).
pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// PJSIP on `my_port` with endpoints `(name, dtmf mode, peer port)`, G.711 µ-law.
pub fn pjsip_conf(my_port: u16, peers: &[(&str, &str, u16)], context: &str) -> String {
    pjsip_conf_codec(my_port, peers, context, "ulaw")
}

pub fn pjsip_conf_codec(
    my_port: u16,
    peers: &[(&str, &str, u16)],
    context: &str,
    codec: &str,
) -> String {
    let mut s =
        format!("[transport-udp]\ntype=transport\nprotocol=udp\nbind=127.0.0.1:{my_port}\n\n");
    for (name, dtmf, port) in peers {
        s.push_str(&format!(
            "[{name}]\ntype=endpoint\ncontext={context}\ndisallow=all\nallow={codec}\ndtmf_mode={dtmf}\n\
             aors={name}\ndirect_media=no\nrtp_symmetric=yes\nmedia_address=127.0.0.1\n\
             bind_rtp_to_media_address=yes\n\n[{name}]\ntype=aor\ncontact=sip:127.0.0.1:{port}\n\n"
        ));
    }
    s
}
