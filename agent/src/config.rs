//! The configuration file of `secure-pay-agent serve --config FILE` (TOML): the PBX nodes to
//! follow, all at once, and a few service settings.
//!
//! ```toml
//! listen = "127.0.0.1:8090"                          # optional (--listen wins)
//! secret_file = "/etc/secure-pay-agent/link.secret"  # optional (--secret-file / env win)
//!
//! [[node]]
//! name = "ast1"              # in call keys (ast1~<Uniqueid>), metrics, /readyz, logs
//! type = "asterisk"          # AMI
//! addr = "10.0.0.11:5038"
//! user = "secure-pay-agent"  # AMI username (default secure-pay-agent)
//! secret_file = "/etc/secure-pay-agent/ast1.secret"
//!
//! [[node]]
//! name = "fs1"
//! type = "freeswitch"        # event socket
//! addr = "10.0.0.21:8021"
//! secret_env = "FS1_ESL_PASSWORD"   # or secret_file
//! ```
//! Secrets are never written in the file itself: each node names a file (`secret_file`) or an
//! environment variable (`secret_env`) holding its AMI / event-socket password.

use serde::Deserialize;

use crate::ami::AmiConfig;
use crate::esl::EslConfig;
use crate::sign::valid_node_name;
use crate::{NodeConfig, PbxLink};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    listen: Option<String>,
    secret_file: Option<String>,
    #[serde(default, rename = "node")]
    nodes: Vec<RawNode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    addr: String,
    user: Option<String>,
    secret_file: Option<String>,
    secret_env: Option<String>,
}

/// What the file configures.
#[derive(Debug)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub secret_file: Option<String>,
    pub nodes: Vec<NodeConfig>,
}

/// Where a node's password comes from.
pub enum SecretRef<'a> {
    File(&'a str),
    Env(&'a str),
}

/// Parses the file's text; `secret` reads a node's password (from a file or the environment).
pub fn parse(
    text: &str,
    mut secret: impl FnMut(SecretRef<'_>) -> Result<String, String>,
) -> Result<FileConfig, String> {
    let raw: RawFile = toml::from_str(text).map_err(|e| e.to_string())?;
    if raw.nodes.is_empty() {
        return Err("no [[node]]: give at least one PBX node".into());
    }
    let mut nodes = Vec::new();
    for n in raw.nodes {
        if !valid_node_name(&n.name) {
            return Err(format!(
                "node name {:?}: give 1-32 letters, digits, '-' or '_'",
                n.name
            ));
        }
        let pw = match (&n.secret_file, &n.secret_env) {
            (Some(f), None) => secret(SecretRef::File(f)),
            (None, Some(e)) => secret(SecretRef::Env(e)),
            _ => Err("give exactly one of secret_file or secret_env".into()),
        }
        .map_err(|e| format!("node {:?}: {e}", n.name))?;
        let link = match n.kind.as_str() {
            "asterisk" => PbxLink::Asterisk(AmiConfig::new(
                &n.addr,
                n.user.as_deref().unwrap_or("secure-pay-agent"),
                &pw,
            )),
            "freeswitch" => {
                if n.user.is_some() {
                    return Err(format!(
                        "node {:?}: the event socket has no user name",
                        n.name
                    ));
                }
                PbxLink::FreeSwitch(EslConfig::new(&n.addr, &pw))
            }
            k => {
                return Err(format!(
                    "node {:?}: type {k:?}: give \"asterisk\" or \"freeswitch\"",
                    n.name
                ))
            }
        };
        nodes.push(NodeConfig { name: n.name, link });
    }
    Ok(FileConfig {
        listen: raw.listen,
        secret_file: raw.secret_file,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(r: SecretRef<'_>) -> Result<String, String> {
        match r {
            SecretRef::File(f) => Ok(format!("file:{f}")),
            SecretRef::Env("MISSING") => Err("not set".into()),
            SecretRef::Env(e) => Ok(format!("env:{e}")),
        }
    }

    #[test]
    fn nodes_of_both_kinds_and_refusals() {
        let f = parse(
            r#"
listen = "127.0.0.1:9000"
[[node]]
name = "ast1"
type = "asterisk"
addr = "127.0.0.1:5038"
secret_file = "/s/ast1"
[[node]]
name = "fs-1"
type = "freeswitch"
addr = "127.0.0.1:8021"
secret_env = "FS1"
"#,
            secrets,
        )
        .unwrap();
        assert_eq!(f.listen.as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(f.nodes.len(), 2);
        match &f.nodes[0].link {
            PbxLink::Asterisk(a) => {
                assert_eq!(a.username, "secure-pay-agent");
                assert_eq!(a.secret, "file:/s/ast1");
            }
            other => panic!("{other:?}"),
        }
        match &f.nodes[1].link {
            PbxLink::FreeSwitch(e) => assert_eq!(e.addr, "127.0.0.1:8021"),
            other => panic!("{other:?}"),
        }
        let bad = |t: &str| parse(t, secrets).unwrap_err();
        let node = |extra: &str| {
            format!("[[node]]\nname = \"a\"\ntype = \"asterisk\"\naddr = \"x:1\"\n{extra}")
        };
        assert!(bad("").contains("no [[node]]"));
        assert!(bad(&node("")).contains("exactly one"));
        assert!(bad(&node("secret_env = \"MISSING\"")).contains("not set"));
        assert!(bad(&node("secret = \"inline\"")).contains("unknown field"));
        assert!(
            bad(&node("secret_env = \"E\"").replace("name = \"a\"", "name = \"a~b\""))
                .contains("node name")
        );
        assert!(bad(&node("secret_env = \"E\"").replace("asterisk", "kamailio")).contains("type"));
    }
}
