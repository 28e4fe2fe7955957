//! `secure-pay-agent`: the agent payment page service (README "Agent payment page").
//!
//! ```text
//! secure-pay-agent serve [--listen 127.0.0.1:8090] [--ami 127.0.0.1:5038] [--ami-user USER]
//!                        [--frame-ancestors "'self' https://desktop.example"]
//!                        [--start-options OPTS] [--allow-origin ORIGIN]...
//! secure-pay-agent link --call UNIQUEID [--ttl 3600] [--base http://127.0.0.1:8090]
//! ```
//! Secrets are never taken from the command line (visible in `ps`): the link secret comes from
//! `SECURE_PAY_AGENT_SECRET` or `--secret-file PATH`, the AMI password from
//! `SECURE_PAY_AMI_SECRET` or `--ami-secret-file PATH`. With `--esl HOST:PORT` it talks to
//! FreeSWITCH's event socket instead (password: `SECURE_PAY_ESL_SECRET` or `--esl-secret-file`).

use std::process::ExitCode;
use std::time::Duration;

use secure_pay::agent::ami::AmiConfig;
use secure_pay::agent::esl::EslConfig;
use secure_pay::agent::sign::{valid_call_id, Signer};
use secure_pay::agent::{unix_now, Config, Service};

const USAGE: &str = "usage:
  secure-pay-agent serve [--listen ADDR:PORT] [--ami HOST:PORT] [--ami-user USER]
                         [--ami-secret-file PATH] [--secret-file PATH]
                         [--frame-ancestors SOURCES] [--start-options OPTIONS]
                         [--allow-origin ORIGIN]...
                         [--esl HOST:PORT [--esl-secret-file PATH]]   (FreeSWITCH instead of AMI)
  secure-pay-agent link --call UNIQUEID [--ttl SECONDS] [--base URL] [--secret-file PATH]

  Secrets: SECURE_PAY_AGENT_SECRET (link signing, >= 16 bytes) or --secret-file;
           SECURE_PAY_AMI_SECRET (AMI password) or --ami-secret-file;
           SECURE_PAY_ESL_SECRET (FreeSWITCH event socket password) or --esl-secret-file.
  Defaults: --listen 127.0.0.1:8090, --ami 127.0.0.1:5038, --ami-user secure-pay-agent,
            --frame-ancestors 'none', --ttl 3600.";

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
    let pbx_desc = match &cfg.esl {
        Some(e) => format!("FreeSWITCH ESL {}", e.addr),
        None => format!("Asterisk AMI {ami_addr}"),
    };
    let svc = Service::start(cfg)?;
    eprintln!(
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
