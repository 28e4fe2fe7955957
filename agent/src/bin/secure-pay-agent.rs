//! `secure-pay-agent`: the agent payment page service (README "Agent payment page").
//!
//! ```text
//! secure-pay-agent serve [--listen 127.0.0.1:8090] [--ami 127.0.0.1:5038] [--ami-user USER]
//!                        [--frame-ancestors "'self' https://desktop.example"]
//!                        [--start-options OPTS] [--allow-origin ORIGIN]...
//!                        [--log-level info] [--max-connections 4096] [--max-per-client 256]
//!                        [--max-streams-per-call 8] [--request-timeout 10] [--insecure-cookie]
//! secure-pay-agent link --call UNIQUEID [--ttl 3600] [--base http://127.0.0.1:8090]
//! ```
//! Logs go to stderr (`--log-level` or `SECURE_PAY_AGENT_LOG`: off, error, warn, info, debug,
//! trace); no level logs card data or link signatures (README "Agent payment page"). At start
//! the soft limit of open files is raised (up to the hard limit) to what `--max-connections`
//! needs.
//! Secrets are never taken from the command line (visible in `ps`): the link secret comes from
//! `SECURE_PAY_AGENT_SECRET` or `--secret-file PATH`, the AMI password from
//! `SECURE_PAY_AMI_SECRET` or `--ami-secret-file PATH`. With `--esl HOST:PORT` it talks to
//! FreeSWITCH's event socket instead (password: `SECURE_PAY_ESL_SECRET` or `--esl-secret-file`).

use std::process::ExitCode;
use std::time::Duration;

use secure_pay_agent::ami::AmiConfig;
use secure_pay_agent::esl::EslConfig;
use secure_pay_agent::logger;
use secure_pay_agent::sign::{valid_call_id, Signer};
use secure_pay_agent::{unix_now, Config, Service};

const USAGE: &str = "usage:
  secure-pay-agent serve [--listen ADDR:PORT] [--ami HOST:PORT] [--ami-user USER]
                         [--ami-secret-file PATH] [--secret-file PATH]
                         [--frame-ancestors SOURCES] [--start-options OPTIONS]
                         [--allow-origin ORIGIN]...
                         [--esl HOST:PORT [--esl-secret-file PATH]]   (FreeSWITCH instead of AMI)
                         [--log-level LEVEL] [--max-connections N] [--max-per-client N]
                         [--max-streams-per-call N] [--request-timeout SECONDS]
                         [--insecure-cookie]   (plain-HTTP labs only: cookie without Secure)
  secure-pay-agent link --call UNIQUEID [--ttl SECONDS] [--base URL] [--secret-file PATH]

  Secrets: SECURE_PAY_AGENT_SECRET (link signing, >= 16 bytes) or --secret-file;
           SECURE_PAY_AMI_SECRET (AMI password) or --ami-secret-file;
           SECURE_PAY_ESL_SECRET (FreeSWITCH event socket password) or --esl-secret-file.
  Defaults: --listen 127.0.0.1:8090, --ami 127.0.0.1:5038, --ami-user secure-pay-agent,
            --frame-ancestors 'none', --ttl 3600, --log-level info (or SECURE_PAY_AGENT_LOG),
            --max-connections 4096, --max-per-client 256, --max-streams-per-call 8,
            --request-timeout 10.";

struct Args {
    list: Vec<String>,
}

impl Args {
    fn value(&mut self, flag: &str) -> Result<Option<String>, String> {
        match self.list.iter().position(|a| a == flag) {
            None => Ok(None),
            Some(i) => {
                if i + 1 >= self.list.len() {
                    return Err(format!("{flag} needs a value"));
                }
                let v = self.list.remove(i + 1);
                self.list.remove(i);
                Ok(Some(v))
            }
        }
    }

    fn values(&mut self, flag: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        while let Some(v) = self.value(flag)? {
            out.push(v);
        }
        Ok(out)
    }

    fn flag(&mut self, flag: &str) -> bool {
        match self.list.iter().position(|a| a == flag) {
            None => false,
            Some(i) => {
                self.list.remove(i);
                true
            }
        }
    }

    fn number(&mut self, flag: &str) -> Result<Option<u64>, String> {
        match self.value(flag)? {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(format!("{flag} {v:?}: give a positive whole number")),
            },
        }
    }

    fn finish(self) -> Result<(), String> {
        match self.list.first() {
            None => Ok(()),
            Some(a) => Err(format!("unexpected argument {a:?}")),
        }
    }
}

fn secret(env: &str, file: Option<String>, what: &str) -> Result<String, String> {
    if let Some(path) = file {
        let s = std::fs::read_to_string(&path)
            .map_err(|e| format!("{what}: cannot read {path}: {e}"))?;
        return Ok(s.trim().to_string());
    }
    match std::env::var(env) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => Err(format!("{what}: set {env} or give the file option")),
    }
}

/// Raises the soft RLIMIT_NOFILE towards `want` (never above the hard limit); returns the soft
/// limit in force.
fn raise_nofile(want: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `r`, a valid, exclusively borrowed rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 0;
    }
    if r.rlim_cur < want {
        let new = libc::rlimit {
            rlim_cur: want.min(r.rlim_max),
            rlim_max: r.rlim_max,
        };
        // SAFETY: setrlimit reads `new`, a valid rlimit; the soft limit stays within the hard.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            r.rlim_cur = new.rlim_cur;
        }
    }
    r.rlim_cur
}

fn serve(mut a: Args) -> Result<(), String> {
    let level = match a.value("--log-level")? {
        Some(l) => l,
        None => std::env::var("SECURE_PAY_AGENT_LOG").unwrap_or_else(|_| "info".into()),
    };
    logger::init(logger::parse_level(&level)?);
    let max_conn = a.number("--max-connections")?;
    let max_client = a.number("--max-per-client")?;
    let max_streams = a.number("--max-streams-per-call")?;
    let req_timeout = a.number("--request-timeout")?;
    let insecure_cookie = a.flag("--insecure-cookie");
    let listen = a
        .value("--listen")?
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let ami_addr = a.value("--ami")?.unwrap_or_else(|| "127.0.0.1:5038".into());
    let ami_user = a
        .value("--ami-user")?
        .unwrap_or_else(|| "secure-pay-agent".into());
    let esl_addr = a.value("--esl")?;
    let esl_file = a.value("--esl-secret-file")?;
    let ami_file = a.value("--ami-secret-file")?;
    // FreeSWITCH (ESL) instead of Asterisk (AMI) when --esl is given.
    let (ami_secret, esl) = match esl_addr {
        Some(addr) => {
            let pw = secret("SECURE_PAY_ESL_SECRET", esl_file, "ESL password")?;
            (String::new(), Some(EslConfig::new(&addr, &pw)))
        }
        None => (
            secret("SECURE_PAY_AMI_SECRET", ami_file, "AMI password")?,
            None,
        ),
    };
    let link_secret = secret(
        "SECURE_PAY_AGENT_SECRET",
        a.value("--secret-file")?,
        "link secret",
    )?;
    let fa = a.value("--frame-ancestors")?;
    let start_options = a.value("--start-options")?;
    let origins = a.values("--allow-origin")?;
    a.finish()?;
    let signer = Signer::new(link_secret.as_bytes())?;
    let mut cfg = Config::new(AmiConfig::new(&ami_addr, &ami_user, &ami_secret), signer);
    cfg.listen = listen
        .parse()
        .map_err(|e| format!("--listen {listen:?}: {e}"))?;
    if let Some(fa) = fa {
        cfg.frame_ancestors = fa;
    }
    if let Some(o) = start_options {
        cfg.start_options = o;
    }
    cfg.allowed_origins = origins;
    cfg.esl = esl;
    let usize_of = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    if let Some(n) = max_conn {
        cfg.max_connections = usize_of(n);
    }
    if let Some(n) = max_client {
        cfg.max_per_client = usize_of(n);
    }
    if let Some(n) = max_streams {
        cfg.max_streams_per_call = usize_of(n);
    }
    if let Some(n) = req_timeout {
        cfg.request_timeout = Duration::from_secs(n);
    }
    if insecure_cookie {
        cfg.cookie_secure = false;
        log::warn!(
            "secure-pay-agent: --insecure-cookie: the session cookie is sent over plain HTTP too; \
             use it only in a lab"
        );
    }
    // every connection is a descriptor, plus the PBX link, the listener, stdio and some slack
    let want = cfg.max_connections as u64 + 64;
    let have = raise_nofile(want);
    if have < want {
        log::warn!(
            "secure-pay-agent: open-files limit {have} is below the {want} that --max-connections {} needs; \
             raise `ulimit -n` (or LimitNOFILE= in the systemd unit) or lower --max-connections",
            cfg.max_connections
        );
    } else {
        log::info!("secure-pay-agent: open-files limit {have}");
    }
    let pbx_desc = match &cfg.esl {
        Some(e) => format!("FreeSWITCH ESL {}", e.addr),
        None => format!("Asterisk AMI {ami_addr}"),
    };
    let svc = Service::start(cfg)?;
    log::info!(
        "secure-pay-agent: listening on http://{} ({pbx_desc}); mint page links with `secure-pay-agent link --call ID`",
        svc.addr()
    );
    svc.wait();
    Ok(())
}

fn link(mut a: Args) -> Result<(), String> {
    let call = a.value("--call")?.ok_or("--call UNIQUEID is required")?;
    let ttl: u64 = match a.value("--ttl")? {
        Some(t) => t
            .parse()
            .map_err(|_| format!("--ttl {t:?}: give seconds"))?,
        None => 3600,
    };
    let base = a
        .value("--base")?
        .unwrap_or_else(|| "http://127.0.0.1:8090".into());
    let link_secret = secret(
        "SECURE_PAY_AGENT_SECRET",
        a.value("--secret-file")?,
        "link secret",
    )?;
    a.finish()?;
    if !valid_call_id(&call) {
        return Err(format!(
            "--call {call:?}: give the customer channel's Uniqueid (letters, digits, . - _)"
        ));
    }
    if ttl == 0 || ttl > Duration::from_secs(7 * 86400).as_secs() {
        return Err("--ttl must be between 1 second and 7 days".into());
    }
    let signer = Signer::new(link_secret.as_bytes())?;
    println!(
        "{}{}",
        base.trim_end_matches('/'),
        signer.link(&call, unix_now() + ttl)
    );
    Ok(())
}

fn main() -> ExitCode {
    let mut list: Vec<String> = std::env::args().skip(1).collect();
    if list.is_empty() || list[0] == "-h" || list[0] == "--help" {
        println!("{USAGE}");
        return if list.is_empty() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let cmd = list.remove(0);
    let args = Args { list };
    let res = match cmd.as_str() {
        "serve" => serve(args),
        "link" => link(args),
        _ => Err(format!("unknown subcommand {cmd:?}\n{USAGE}")),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("secure-pay-agent: {e}");
            ExitCode::from(2)
        }
    }
}
