//! Configuration shared by both adapters: one typed struct, set from `key = value` pairs (the
//! Asterisk `secure_pay.conf` and FreeSWITCH `secure_pay.conf.xml` both feed pairs) and from
//! dialplan/API option strings. Every bad value gives a clear error naming the key.
//!
//! API CONTRACT (skeleton; the capture work fills in the keys).

use crate::core::suppress::MaskerConfig;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub masker: MaskerConfig,
}
