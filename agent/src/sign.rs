//! Signed per-call links and the CSRF token derived from them.
//!
//! A link is `/call/<call-id>?exp=<unix seconds>&sig=<hex>` where
//! `sig = HMAC-SHA256(secret, "secure-pay-agent/v1/link\0" || call-id || "\0" || exp)`.
//! Anyone holding the link can watch and drive that one call until `exp`; nobody can forge a
//! link for another call or extend its lifetime without the secret.
//!
//! The service exchanges a link once for a session (the `sp_session` cookie, [`Signer::session`]):
//! `<exp>.<nonce>.<HMAC(secret, "secure-pay-agent/v1/session\0" || call-id || "\0" || exp "."
//! nonce)>`. The CSRF token of a page is `HMAC-SHA256(secret, "secure-pay-agent/v1/csrf\0" ||
//! call-id || "\0" || session)`: embedded in the page, sent back in the `X-SecurePay-Token`
//! header of every POST. Comparisons are constant-time (`Mac::verify_slice`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The longest call id accepted in a link (Asterisk Uniqueids are ~20 characters).
pub const MAX_CALL_ID: usize = 128;

/// Why a link is refused (each maps to a 403 page with this text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// `exp` or `sig` is missing.
    Unsigned,
    /// `exp` is not a number or `sig` is not 64 hex digits.
    Malformed,
    /// The signature does not match (tampered call id, expiry or signature).
    BadSignature,
    /// The link was valid but its expiry has passed.
    Expired,
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LinkError::Unsigned => "this link is not signed",
            LinkError::Malformed => "this link is malformed",
            LinkError::BadSignature => {
                "this link's signature is not valid (altered or not issued here)"
            }
            LinkError::Expired => "this link has expired",
        })
    }
}

/// The signing key (at least 16 bytes).
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<secret>)")
    }
}

/// Is `id` an acceptable call id (printable ASCII without separators used in URLs/paths)?
pub fn valid_call_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CALL_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Separates the node name from the PBX's call id in a call key (`<node>~<call-id>`).
pub const NODE_SEP: char = '~';
/// The longest node name.
pub const MAX_NODE_NAME: usize = 32;

/// Is `name` an acceptable PBX node name (1-32 of letters, digits, `-`, `_`)?
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NODE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// Is `key` an acceptable call key: a call id (the single unnamed node of `--ami`/`--esl`), or
/// `<node>~<call-id>` (a node of the configuration file)? The whole key is what links and
/// sessions sign, so a link for a call on one node cannot be turned into one for another node.
pub fn valid_call_key(key: &str) -> bool {
    match key.split_once(NODE_SEP) {
        Some((node, id)) => valid_node_name(node) && valid_call_id(id),
        None => valid_call_id(key),
    }
}

/// The call key of call `id` on `node` (`node` empty: the single unnamed node).
pub fn call_key(node: &str, id: &str) -> String {
    if node.is_empty() {
        id.to_string()
    } else {
        format!("{node}{NODE_SEP}{id}")
    }
}

fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(H[usize::from(b >> 4)]));
        s.push(char::from(H[usize::from(b & 15)]));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let v = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(v(p[0])? << 4 | v(p[1])?))
        .collect()
}

impl Signer {
    /// A signer with `secret` (bytes of the configured secret). Refuses secrets shorter than
    /// 16 bytes.
    pub fn new(secret: &[u8]) -> Result<Signer, String> {
        if secret.len() < 16 {
            return Err(format!(
                "the link secret is {} bytes; use at least 16 (e.g. `openssl rand -hex 32`)",
                secret.len()
            ));
        }
        Ok(Signer {
            key: secret.to_vec(),
        })
    }

    fn mac(&self, purpose: &str, call: &str, exp: u64) -> HmacSha256 {
        self.mac_str(purpose, call, &exp.to_string())
    }

    fn mac_str(&self, purpose: &str, call: &str, data: &str) -> HmacSha256 {
        // HMAC accepts keys of any length: new_from_slice cannot fail.
        let mut m = match HmacSha256::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable_mac(),
        };
        m.update(b"secure-pay-agent/v1/");
        m.update(purpose.as_bytes());
        m.update(b"\0");
        m.update(call.as_bytes());
        m.update(b"\0");
        m.update(data.as_bytes());
        m
    }

    /// The hex signature of (call, exp).
    pub fn sign(&self, call: &str, exp: u64) -> String {
        hex(&self.mac("link", call, exp).finalize().into_bytes())
    }

    /// The path + query of a signed link.
    pub fn link(&self, call: &str, exp: u64) -> String {
        format!("/call/{call}?exp={exp}&sig={}", self.sign(call, exp))
    }

    /// Checks a link's `exp` and `sig` query values for `call` at time `now` (unix seconds).
    /// Returns the expiry on success.
    pub fn verify(
        &self,
        call: &str,
        exp: Option<&str>,
        sig: Option<&str>,
        now: u64,
    ) -> Result<u64, LinkError> {
        let (Some(exp), Some(sig)) = (exp, sig) else {
            return Err(LinkError::Unsigned);
        };
        if exp.is_empty() || exp.len() > 20 || !exp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LinkError::Malformed);
        }
        let exp_n: u64 = exp.parse().map_err(|_| LinkError::Malformed)?;
        let sig_b = unhex(sig)
            .filter(|b| b.len() == 32)
            .ok_or(LinkError::Malformed)?;
        // Signature first: an expired link with a bad signature is "tampered", not "expired".
        self.mac("link", call, exp_n)
            .verify_slice(&sig_b)
            .map_err(|_| LinkError::BadSignature)?;
        if now >= exp_n {
            return Err(LinkError::Expired);
        }
        Ok(exp_n)
    }

    /// The CSRF token of the page opened with a valid link for (call, exp).
    pub fn csrf_token(&self, call: &str, exp: u64) -> String {
        hex(&self.mac("csrf", call, exp).finalize().into_bytes())
    }

    /// Constant-time check of a CSRF token.
    pub fn verify_csrf(&self, call: &str, exp: u64, token: &str) -> bool {
        match unhex(token) {
            Some(b) if b.len() == 32 => self.mac("csrf", call, exp).verify_slice(&b).is_ok(),
            _ => false,
        }
    }
}

/// The session cookie's name (scoped with `Path=/call/<id>`, so each call has its own).
pub const SESSION_COOKIE: &str = "sp_session";

impl Signer {
    /// A page session for `call` until `exp`: `<exp>.<nonce hex>.<mac hex>` with `mac =
    /// HMAC(secret, "secure-pay-agent/v1/session\0" || call || "\0" || exp "." nonce)`. It is
    /// what the one-time link exchange puts into the HttpOnly cookie.
    pub fn session(&self, call: &str, exp: u64, nonce: &[u8; 16]) -> String {
        let data = format!("{exp}.{}", hex(nonce));
        let mac = hex(&self.mac_str("session", call, &data).finalize().into_bytes());
        format!("{data}.{mac}")
    }

    /// Checks a session value for `call` at `now`: its expiry, or why it is refused.
    pub fn verify_session(&self, call: &str, value: &str, now: u64) -> Result<u64, LinkError> {
        let mut it = value.splitn(3, '.');
        let (Some(exp), Some(nonce), Some(mac)) = (it.next(), it.next(), it.next()) else {
            return Err(LinkError::Malformed);
        };
        if exp.is_empty() || exp.len() > 20 || !exp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LinkError::Malformed);
        }
        let exp_n: u64 = exp.parse().map_err(|_| LinkError::Malformed)?;
        if unhex(nonce).filter(|b| b.len() == 16).is_none() {
            return Err(LinkError::Malformed);
        }
        let mac_b = unhex(mac)
            .filter(|b| b.len() == 32)
            .ok_or(LinkError::Malformed)?;
        self.mac_str("session", call, &format!("{exp}.{nonce}"))
            .verify_slice(&mac_b)
            .map_err(|_| LinkError::BadSignature)?;
        if now >= exp_n {
            return Err(LinkError::Expired);
        }
        Ok(exp_n)
    }

    /// The CSRF token of a page opened in session `session` (embedded in the page, sent back
    /// in `X-SecurePay-Token`).
    pub fn session_csrf(&self, call: &str, session: &str) -> String {
        hex(&self.mac_str("csrf", call, session).finalize().into_bytes())
    }

    /// Constant-time check of a session's CSRF token.
    pub fn verify_session_csrf(&self, call: &str, session: &str, token: &str) -> bool {
        match unhex(token) {
            Some(b) if b.len() == 32 => {
                self.mac_str("csrf", call, session).verify_slice(&b).is_ok()
            }
            _ => false,
        }
    }
}

#[cold]
fn unreachable_mac() -> ! {
    // Hmac::new_from_slice only fails for fixed-key-size MACs; HMAC takes any key length.
    panic!("HMAC-SHA256 rejected a key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> Signer {
        Signer::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn sign_verify_roundtrip_and_rejections() {
        let s = s();
        let sig = s.sign("1700000000.1", 2000);
        assert_eq!(sig.len(), 64);
        assert_eq!(
            s.verify("1700000000.1", Some("2000"), Some(&sig), 1999),
            Ok(2000)
        );
        assert_eq!(
            s.verify("1700000000.1", Some("2000"), Some(&sig), 2000),
            Err(LinkError::Expired)
        );
        assert_eq!(
            s.verify("1700000000.2", Some("2000"), Some(&sig), 1),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            s.verify("1700000000.1", Some("2001"), Some(&sig), 1),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            s.verify("1700000000.1", None, Some(&sig), 1),
            Err(LinkError::Unsigned)
        );
        assert_eq!(
            s.verify("1700000000.1", Some("x"), Some(&sig), 1),
            Err(LinkError::Malformed)
        );
        assert_eq!(
            s.verify("1700000000.1", Some("2000"), Some("abcd"), 1),
            Err(LinkError::Malformed)
        );
        let other = Signer::new(b"another secret of enough length").unwrap();
        assert_eq!(
            other.verify("1700000000.1", Some("2000"), Some(&sig), 1),
            Err(LinkError::BadSignature)
        );
        // the CSRF token is not the link signature and is bound to the call
        let t = s.csrf_token("1700000000.1", 2000);
        assert_ne!(t, sig);
        assert!(s.verify_csrf("1700000000.1", 2000, &t));
        assert!(!s.verify_csrf("1700000000.2", 2000, &t));
        assert!(!s.verify_csrf("1700000000.1", 2000, &sig));
        assert!(!s.verify_csrf("1700000000.1", 2000, ""));
    }

    #[test]
    fn sessions_are_bound_to_the_call_and_expire() {
        let s = s();
        let v = s.session("1700000000.1", 2000, &[7; 16]);
        assert_eq!(s.verify_session("1700000000.1", &v, 1999), Ok(2000));
        assert_eq!(
            s.verify_session("1700000000.1", &v, 2000),
            Err(LinkError::Expired)
        );
        assert_eq!(
            s.verify_session("1700000000.2", &v, 1),
            Err(LinkError::BadSignature)
        );
        // a longer expiry with the same mac is refused
        let forged = v.replacen("2000.", "9000.", 1);
        assert_eq!(
            s.verify_session("1700000000.1", &forged, 1),
            Err(LinkError::BadSignature)
        );
        for bad in ["", "2000", "2000.ab", "x.y.z", "2000..", &v[..v.len() - 2]] {
            assert!(s.verify_session("1700000000.1", bad, 1).is_err(), "{bad}");
        }
        // the link signature for the same (call, exp) is not a session
        let link = format!("2000.{}.{}", "07".repeat(16), s.sign("1700000000.1", 2000));
        assert!(s.verify_session("1700000000.1", &link, 1).is_err());
        let t = s.session_csrf("1700000000.1", &v);
        assert!(s.verify_session_csrf("1700000000.1", &v, &t));
        assert!(!s.verify_session_csrf("1700000000.2", &v, &t));
        let other = s.session("1700000000.1", 2000, &[8; 16]);
        assert!(!s.verify_session_csrf("1700000000.1", &other, &t));
    }

    #[test]
    fn short_secret_refused_and_ids_checked() {
        assert!(Signer::new(b"short").is_err());
        assert!(valid_call_id("1700000000.12"));
        assert!(valid_call_id("pbx1-1700000000.12"));
        assert!(!valid_call_id(""));
        assert!(!valid_call_id("a/b"));
        assert!(!valid_call_id("a b"));
        assert!(!valid_call_id(&"1".repeat(129)));
    }
}
