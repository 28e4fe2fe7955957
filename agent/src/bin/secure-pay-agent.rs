//! `secure-pay-agent`: the agent payment page service (docs/agent-page.md; many PBX nodes,
//! replicas, metrics: docs/scaling.md).
//!
//! ```text
//! secure-pay-agent serve [--listen 127.0.0.1:8090] [--ami 127.0.0.1:5038] [--ami-user USER]
//!                        [--frame-ancestors "'self' https://desktop.example"]
//!                        [--start-options OPTS] [--allow-origin ORIGIN]...
//!                        [--log-level info] [--max-connections 4096] [--max-per-client 256]
//!                        [--max-streams-per-call 8] [--request-timeout 10] [--insecure-cookie]
//! secure-pay-agent serve --config /etc/secure-pay-agent/agent.toml [...]   (many PBX nodes)
//! secure-pay-agent link --call UNIQUEID [--node NAME] [--ttl 3600] [--base http://127.0.0.1:8090]
//! ```
//! `--config FILE` follows every `[[node]]` of the file (Asterisk AMI and FreeSWITCH event
//! socket nodes, at once; see `secure_pay_agent::config`); links then name their node
//! (`link --node NAME`). `--log-format json` writes one JSON object per line.
//! Logs go to stderr (`--log-level` or `SECURE_PAY_AGENT_LOG`: off, error, warn, info, debug,
//! trace); no level logs card data or link signatures (docs/agent-page.md). At start
//! the soft limit of open files is raised (up to the hard limit) to what `--max-connections`
//! needs.
//! Secrets are never taken from the command line (visible in `ps`): the link secret comes from
//! `SECURE_PAY_AGENT_SECRET` or `--secret-file PATH`, the AMI password from
//! `SECURE_PAY_AMI_SECRET` or `--ami-secret-file PATH`. With `--esl HOST:PORT` it talks to
//! FreeSWITCH's event socket instead (password: `SECURE_PAY_ESL_SECRET` or `--esl-secret-file`).

use std::process::ExitCode;
use std::time::Duration;

use secure_pay_agent::ami::AmiConfig;
use secure_pay_agent::config::{self, SecretRef};
use secure_pay_agent::esl::EslConfig;
use secure_pay_agent::logger;
use secure_pay_agent::sign::{call_key, valid_call_id, valid_node_name, Signer};
use secure_pay_agent::{unix_now, Config, PbxLink, Service};

const USAGE: &str = "usage:
  secure-pay-agent serve [--listen ADDR:PORT] [--ami HOST:PORT] [--ami-user USER]
                         [--ami-secret-file PATH] [--secret-file PATH]
                         [--frame-ancestors SOURCES] [--start-options OPTIONS]
                         [--allow-origin ORIGIN]...
                         [--esl HOST:PORT [--esl-secret-file PATH]]   (FreeSWITCH instead of AMI)
                         [--config FILE]   (many PBX nodes: [[node]] sections, instead of
                                            --ami/--esl; see docs/scaling.md)
                         [--log-level LEVEL] [--log-format text|json]
                         [--max-connections N] [--max-per-client N]
                         [--max-streams-per-call N] [--request-timeout SECONDS]
                         [--insecure-cookie]   (plain-HTTP labs only: cookie without Secure)
  secure-pay-agent link --call UNIQUEID [--node NAME] [--ttl SECONDS] [--base URL]
                        [--secret-file PATH]

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

fn serve(mut a: Args) -> Result<(), String> {
    let level = match a.value("--log-level")? {
        Some(l) => l,
        None => std::env::var("SECURE_PAY_AGENT_LOG").unwrap_or_else(|_| "info".into()),
    };
    let json_logs = match a.value("--log-format")?.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(f) => return Err(format!("--log-format {f:?}: give text or json")),
    };
    logger::init_with(logger::parse_level(&level)?, json_logs);
    let file = match a.value("--config")? {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("--config: cannot read {path}: {e}"))?;
            let f = config::parse(&text, |r| match r {
                SecretRef::File(p) => std::fs::read_to_string(p)
                    .map(|s| s.trim().to_string())
                    .map_err(|e| format!("cannot read {p}: {e}")),
                SecretRef::Env(v) => match std::env::var(v) {
                    Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                    _ => Err(format!("environment variable {v} is not set")),
                },
            })
            .map_err(|e| format!("--config {path}: {e}"))?;
            Some(f)
        }
        None => None,
    };
    let max_conn = a.number("--max-connections")?;
    let max_client = a.number("--max-per-client")?;
    let max_streams = a.number("--max-streams-per-call")?;
    let req_timeout = a.number("--request-timeout")?;
    let insecure_cookie = a.flag("--insecure-cookie");
    let listen = a
        .value("--listen")?
        .or_else(|| file.as_ref().and_then(|f| f.listen.clone()))
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let ami_given = a.value("--ami")?;
    let ami_user_given = a.value("--ami-user")?;
    let node_flags = ami_given.is_some() || ami_user_given.is_some();
    let ami_addr = ami_given.unwrap_or_else(|| "127.0.0.1:5038".into());
    let ami_user = ami_user_given.unwrap_or_else(|| "secure-pay-agent".into());
    let esl_addr = a.value("--esl")?;
    let esl_file = a.value("--esl-secret-file")?;
    let ami_file = a.value("--ami-secret-file")?;
    if file.is_some()
        && (esl_addr.is_some() || esl_file.is_some() || ami_file.is_some() || node_flags)
    {
        return Err("--config names the PBX nodes: leave out --ami, --ami-user, --esl and their secret files".into());
    }
    // FreeSWITCH (ESL) instead of Asterisk (AMI) when --esl is given.
    let (ami_secret, esl) = match esl_addr {
        _ if file.is_some() => (String::new(), None),
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
        a.value("--secret-file")?.or_else(|| {
            // the file's secret_file when neither the flag nor the environment gives one
            std::env::var_os("SECURE_PAY_AGENT_SECRET")
                .is_none()
                .then(|| file.as_ref().and_then(|f| f.secret_file.clone()))
                .flatten()
        }),
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
    if let Some(f) = file {
        cfg.nodes = f.nodes;
    }
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
    // every connection is a descriptor, plus the refused ones held for their answer, the PBX
    // links, the listener, stdio and some slack
    let refused = secure_pay_agent::REFUSE_HELD_MAX + secure_pay_agent::REFUSE_QUEUE;
    let want = cfg.max_connections as u64 + refused as u64 + 64;
    let have = secure_pay_agent::limits::raise_nofile(want);
    if have < want {
        log::warn!(
            "secure-pay-agent: open-files limit {have} is below the {want} that --max-connections {} needs; \
             raise `ulimit -n` (or LimitNOFILE= in the systemd unit) or lower --max-connections",
            cfg.max_connections
        );
    } else {
        log::info!("secure-pay-agent: open-files limit {have}");
    }
    let pbx_desc = cfg
        .effective_nodes()
        .iter()
        .map(|n| {
            let what = match &n.link {
                PbxLink::Asterisk(_) => "Asterisk AMI",
                PbxLink::FreeSwitch(_) => "FreeSWITCH ESL",
            };
            if n.name.is_empty() {
                format!("{what} {}", n.link.addr())
            } else {
                format!("node {} = {what} {}", n.name, n.link.addr())
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
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
    let node = a.value("--node")?;
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
    let key = match node {
        Some(n) if valid_node_name(&n) => call_key(&n, &call),
        Some(n) => {
            return Err(format!(
                "--node {n:?}: give the node's name from the configuration file"
            ))
        }
        None => call,
    };
    let signer = Signer::new(link_secret.as_bytes())?;
    println!(
        "{}{}",
        base.trim_end_matches('/'),
        signer.link(&key, unix_now() + ttl)
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
