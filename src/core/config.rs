//! Configuration shared by both adapters: one typed struct, set from `key = value` pairs (the
//! Asterisk `secure_pay.conf` and FreeSWITCH `secure_pay.conf.xml` both feed pairs) and from
//! dialplan/API option strings. Every bad value gives a clear error naming the key and what is
//! allowed. The full key table is in docs/capture.md ("Configuration keys").
//!
//! Loading order for adapters: `Config::default()`, then `set`/`set_in_section` for every pair,
//! then [`Config::resolve`] (cross-key checks + connector selection). Per call:
//! `cfg.for_call(opts)` (the ONE per-call path: it may only narrow, and calls `resolve`), then
//! `Session::start(&cfg.capture, ...)`.
//!
//! Keys are case-insensitive and `-`/`_` are interchangeable (`inter-digit-timeout-ms` ==
//! `inter_digit_timeout_ms`). Connector profile keys are set either in a section named after
//! the profile (`set_in_section("stripe", "url", ..)`, Asterisk `[stripe]`) or flat as
//! `connector.<name>.<key>` (FreeSWITCH `<param name="connector.stripe.url" .../>`).

use crate::core::capture::card::Brand;
use crate::core::capture::field::{FieldKind, FieldList};
use crate::core::capture::mask::PanDisplay;
use crate::core::digit::Digit;
use crate::core::payment::{ConnectorProfile, PaymentMethod};
use crate::core::suppress::{MaskMode, Masker, MaskerConfig};

/// Longest generic field (reference) we accept; bounded by `SecretDigits` capacity.
pub const MAX_GENERIC_LENGTH: usize = 32;

/// What secure mode does with the PBX's recordings of the call (key `recording`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordingMode {
    /// Recordings keep running and get the masked audio (default). A recording the module
    /// cannot mask (a codec-payload tap, e.g. a FreeSWITCH native-format `record_session`) is
    /// paused for the secure period, with a `recording` event (see docs/recording.md).
    #[default]
    Mask,
    /// The module pauses the PBX's recordings of both legs for the secure period and resumes
    /// them when secure mode ends (every exit path), with `recording` events.
    Pause,
}

impl RecordingMode {
    pub const ALL: [RecordingMode; 2] = [RecordingMode::Mask, RecordingMode::Pause];

    pub fn name(self) -> &'static str {
        match self {
            RecordingMode::Mask => "mask",
            RecordingMode::Pause => "pause",
        }
    }

    pub fn from_name(v: &str) -> Option<RecordingMode> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(v.trim()))
    }
}

/// A set of [`RecordingMode`]s (admin key `allowed_recording`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordingModes {
    mask: bool,
    pause: bool,
}

impl RecordingModes {
    pub fn contains(self, m: RecordingMode) -> bool {
        match m {
            RecordingMode::Mask => self.mask,
            RecordingMode::Pause => self.pause,
        }
    }

    pub fn insert(&mut self, m: RecordingMode) {
        match m {
            RecordingMode::Mask => self.mask = true,
            RecordingMode::Pause => self.pause = true,
        }
    }

    pub fn is_empty(self) -> bool {
        !self.mask && !self.pause
    }

    /// `mask,pause` (comma separated names, in [`RecordingMode::ALL`] order).
    pub fn to_header(self) -> String {
        let v: Vec<&str> = RecordingMode::ALL
            .into_iter()
            .filter(|m| self.contains(*m))
            .map(RecordingMode::name)
            .collect();
        v.join(",")
    }
}

/// Everything a capture [`Session`](crate::core::capture::Session) needs.
#[derive(Clone, Debug, PartialEq)]
pub struct CaptureConfig {
    /// Required fields, in capture order (default: card number, expiry, security code).
    pub fields: FieldList,
    /// Fields the agent may capture or require on this call (admin key `allowed_fields`;
    /// default: card number, expiry, security code, postal code; the generic `reference` and
    /// `amount` only when the admin lists them). The admin's `fields` are always allowed.
    pub allowed_fields: FieldList,
    /// Accepted card brands (default: all eight).
    pub allowed_brands: Vec<Brand>,
    /// Ends a variable-length field (default `#`; `None` = no terminator key).
    pub terminator: Option<char>,
    /// Wipes the active field (default `*`; `None` = no clear key).
    pub clear_key: Option<char>,
    /// Complete a field by itself when it reaches its maximum valid length (default true).
    pub auto_advance: bool,
    /// Time allowed for the first digit of a field (default 15000 ms).
    pub first_digit_timeout_ms: u64,
    /// Time allowed between digits (default 5000 ms).
    pub inter_digit_timeout_ms: u64,
    /// The whole session ends itself (stop reason `timeout`) after this (default 600000 ms).
    pub session_timeout_ms: u64,
    /// Failed attempts per field before the field is given up (default 3).
    pub max_attempts: u32,
    pub pan_display: PanDisplay,
    /// Show the expiry (MMYY) once valid (default false).
    pub show_expiry: bool,
    /// Show the postal code once valid (default false).
    pub show_postal_code: bool,
    /// Show the generic fields (reference, amount) once valid (default false: whatever the
    /// customer keys into them is shown, so a hostile agent could ask for card data there).
    pub show_generic: bool,
    pub postal_code_min_length: usize,
    pub postal_code_max_length: usize,
    pub reference_min_length: usize,
    pub reference_max_length: usize,
    pub amount_min_length: usize,
    pub amount_max_length: usize,
    /// Expiry more than this many years ahead is invalid (default 20).
    pub expiry_max_years: u32,
    /// The same key from a DIFFERENT source within this window is the same press (default 300).
    pub dedup_window_ms: u64,
    /// The same key from the SAME source within this window is a repeat (default 50).
    pub repeat_window_ms: u64,
    /// Charge amount in minor units when `amount` is not a captured field.
    pub charge_amount: Option<u64>,
    /// The connector profile submit hands off to (`None`: submit is refused).
    pub connector: Option<ConnectorProfile>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            fields: [
                FieldKind::CardNumber,
                FieldKind::ExpirationDate,
                FieldKind::SecurityCode,
            ]
            .into_iter()
            .collect(),
            allowed_fields: [
                FieldKind::CardNumber,
                FieldKind::ExpirationDate,
                FieldKind::SecurityCode,
                FieldKind::PostalCode,
            ]
            .into_iter()
            .collect(),
            allowed_brands: Brand::ALL.to_vec(),
            terminator: Some('#'),
            clear_key: Some('*'),
            auto_advance: true,
            first_digit_timeout_ms: 15_000,
            inter_digit_timeout_ms: 5_000,
            session_timeout_ms: 600_000,
            max_attempts: 3,
            pan_display: PanDisplay::Last4,
            show_expiry: false,
            show_postal_code: false,
            show_generic: false,
            postal_code_min_length: 3,
            postal_code_max_length: 10,
            reference_min_length: 1,
            reference_max_length: 20,
            amount_min_length: 1,
            amount_max_length: 10,
            expiry_max_years: 20,
            dedup_window_ms: 300,
            repeat_window_ms: 50,
            charge_amount: None,
            connector: None,
        }
    }
}

/// The whole module configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub capture: CaptureConfig,
    pub masker: MaskerConfig,
    pub connectors: Vec<ConnectorProfile>,
    /// Name of the profile to use (`None`: the only profile if exactly one is defined).
    pub connector: Option<String>,
    /// Admin opt-in (`allow_leaky_lookahead = yes`) for a `lookahead_ms` below
    /// [`Masker::min_leak_free_lookahead_ms`] (the head of each tone can then be heard).
    pub allow_leaky_lookahead: bool,
    /// What secure mode does with the PBX's recordings (admin key `recording`, default `mask`).
    /// Per call only a value in [`Config::allowed_recording_modes`] may be chosen.
    pub recording: RecordingMode,
    /// Extra values a per-call option may choose for `recording` (admin key
    /// `allowed_recording`, e.g. `mask,pause`). The admin's own `recording` is always allowed;
    /// by default nothing else is (an admin who picks `pause` gets pause only).
    pub allowed_recording: RecordingModes,
}

/// A bad key or value. `Display` names the key and says what is wrong / allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys and values echo per-call input: through the outgoing guard like every event.
        let text = format!("secure_pay config key '{}': {}", self.key, self.message);
        f.write_str(&crate::core::guard::redact_pans(&text))
    }
}

impl std::error::Error for ConfigError {}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: short(key, 64),
        message: message.into(),
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        let mut t: String = s.chars().take(n).collect();
        t.push_str("...");
        t
    } else {
        s.to_string()
    }
}

/// `'value'` for messages (truncated).
fn shown(v: &str) -> String {
    format!("'{}'", short(v, 40))
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err(err(
            key,
            format!(
                "{} is not a boolean; allowed: yes|no|true|false|on|off|1|0",
                shown(v)
            ),
        )),
    }
}

fn parse_num(key: &str, v: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let n: u64 = v.parse().map_err(|_| {
        err(
            key,
            format!("{} is not a whole number; allowed: {min}..={max}", shown(v)),
        )
    })?;
    if n < min || n > max {
        return Err(err(
            key,
            format!("{n} is out of range; allowed: {min}..={max}"),
        ));
    }
    Ok(n)
}

fn parse_key(key: &str, v: &str) -> Result<Option<char>, ConfigError> {
    let lv = v.to_ascii_lowercase();
    if lv == "none" || lv == "off" {
        return Ok(None);
    }
    let mut chars = v.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if matches!(c.to_ascii_uppercase(), '*' | '#' | 'A' | 'B' | 'C' | 'D') => {
            Ok(Digit::from_char(c).map(Digit::as_char))
        }
        _ => Err(err(
            key,
            format!("{} is not a key; allowed: * # A B C D none", shown(v)),
        )),
    }
}

fn parse_fields(key: &str, v: &str) -> Result<FieldList, ConfigError> {
    let mut l = FieldList::new();
    for name in parse_list(v) {
        let f = FieldKind::from_name(name).ok_or_else(|| {
            err(
                key,
                format!(
                    "unknown field {}; allowed: {}",
                    shown(name),
                    FieldKind::all_names()
                ),
            )
        })?;
        if !l.push(f) {
            return Err(err(key, format!("field {} is listed twice", f.name())));
        }
    }
    if l.is_empty() {
        return Err(err(
            key,
            format!(
                "needs at least one field; allowed: {}",
                FieldKind::all_names()
            ),
        ));
    }
    Ok(l)
}

/// Normalises a key: trimmed, lower case, `-` → `_`.
fn norm(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('-', "_")
}

/// Keys whose value is a list (option strings may continue them with bare words).
fn is_list_key(k: &str) -> bool {
    matches!(
        norm(k).as_str(),
        "fields"
            | "required"
            | "allowed_fields"
            | "allowed_recording"
            | "allowed_brands"
            | "valid_card_types"
            | "card_types"
    )
}

fn parse_list(v: &str) -> impl Iterator<Item = &str> {
    v.split([',', ' ', '\t', ';', '|'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// What a per-call option may do with a key (see [`Config::for_call`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerCall {
    /// Any valid value (keys, auto-advance, mask mode, charge amount).
    Free,
    /// One of the admin's connector profiles by name, or `none`.
    Connector,
    /// A subset of the admin's `allowed_fields`.
    Fields,
    /// A subset of the admin's `allowed_brands`.
    Brands,
    /// At most the admin's value (timeouts, attempts, maximum lengths).
    AtMost,
    /// At least the admin's value (minimum lengths).
    AtLeast,
    /// Shows at most as much of the card number as the admin's `pan_display`.
    PanDisplay,
    /// `show_*`: may only be switched off.
    ShowOff,
    /// Not below the leak-free minimum (nor below the admin's value if that is lower).
    Lookahead,
    /// One of the admin's allowed recording modes (`recording` plus `allowed_recording`).
    Recording,
    /// `notch`: may only be switched on (never off when the admin turned it on).
    NotchOn,
    /// Refused per call (connector.*, dedup windows, allowed_fields opt-ins, unknown keys).
    AdminOnly,
}

/// The per-call rule of a normalised key.
pub fn per_call_rule(k: &str) -> PerCall {
    match k {
        "terminator" | "terminator_key" | "clear_key" | "clear" | "auto_advance" | "mode"
        | "mask_mode" | "charge_amount" | "amount" => PerCall::Free,
        "connector" => PerCall::Connector,
        "fields" | "required" | "allowed_fields" => PerCall::Fields,
        "allowed_brands" | "valid_card_types" | "card_types" => PerCall::Brands,
        "first_digit_timeout_ms"
        | "inter_digit_timeout_ms"
        | "timeout_ms"
        | "session_timeout_ms"
        | "max_attempts"
        | "postal_code_max_length"
        | "max_postal_code_length"
        | "reference_max_length"
        | "amount_max_length" => PerCall::AtMost,
        "postal_code_min_length"
        | "min_postal_code_length"
        | "reference_min_length"
        | "amount_min_length" => PerCall::AtLeast,
        "pan_display" => PerCall::PanDisplay,
        "show_expiry" | "show_postal_code" | "show_generic" => PerCall::ShowOff,
        "lookahead_ms" => PerCall::Lookahead,
        "recording" => PerCall::Recording,
        "notch" => PerCall::NotchOn,
        _ => PerCall::AdminOnly,
    }
}

/// Splits an option string into `(key, value)` pairs (syntax: [`Config::for_call`]).
fn option_pairs(opts: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    let mut pending: Option<(String, String)> = None;
    for tok in opts
        .split([',', ';', '|', ' ', '\t', '\n', '\r'])
        .filter(|t| !t.trim().is_empty())
    {
        let tok = tok.trim();
        if let Some((k, v)) = tok.split_once('=') {
            if let Some(p) = pending.take() {
                out.push(p);
            }
            let k = k.trim();
            if k.is_empty() {
                return Err(err(tok, "option has an empty key; expected key=value"));
            }
            pending = Some((k.to_string(), v.trim().to_string()));
        } else {
            match pending.as_mut() {
                Some((pk, pv)) if is_list_key(pk) => {
                    pv.push(',');
                    pv.push_str(tok);
                }
                _ => return Err(err(tok, "option is not key=value (bare words only continue fields= or allowed_brands= lists)")),
            }
        }
    }
    out.extend(pending);
    Ok(out)
}

impl Config {
    /// Sets one `key = value` pair of the `[general]` section / FreeSWITCH `<settings>`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let k = norm(key);
        let v = value.trim();
        // The profile name keeps its spelling (only the key part is normalised).
        let raw = key.trim();
        if let Some(rest) = raw
            .get(..10)
            .filter(|p| p.eq_ignore_ascii_case("connector."))
            .and_then(|_| raw.get(10..))
        {
            return match rest.split_once('.') {
                Some((name, ck)) if !name.is_empty() => self.set_connector(name, ck, v),
                _ => Err(err(key, "expected connector.<profile>.<key>")),
            };
        }
        let c = &mut self.capture;
        match k.as_str() {
            "fields" | "required" => c.fields = parse_fields(key, v)?,
            "allowed_fields" => c.allowed_fields = parse_fields(key, v)?,
            "allowed_brands" | "valid_card_types" | "card_types" => {
                let mut b = Vec::new();
                for name in parse_list(v) {
                    let br = Brand::from_name(name).ok_or_else(|| {
                        err(
                            key,
                            format!(
                                "unknown card brand {}; allowed: visa, mastercard, amex, discover, jcb, diners-club, unionpay, maestro",
                                shown(name)
                            ),
                        )
                    })?;
                    if !b.contains(&br) {
                        b.push(br);
                    }
                }
                if b.is_empty() {
                    return Err(err(key, "needs at least one card brand"));
                }
                c.allowed_brands = b;
            }
            "terminator" | "terminator_key" => c.terminator = parse_key(key, v)?,
            "clear_key" | "clear" => c.clear_key = parse_key(key, v)?,
            "auto_advance" => c.auto_advance = parse_bool(key, v)?,
            "first_digit_timeout_ms" => {
                c.first_digit_timeout_ms = parse_num(key, v, 1_000, 300_000)?
            }
            "inter_digit_timeout_ms" | "timeout_ms" => {
                c.inter_digit_timeout_ms = parse_num(key, v, 500, 120_000)?
            }
            "session_timeout_ms" => c.session_timeout_ms = parse_num(key, v, 10_000, 7_200_000)?,
            "max_attempts" => c.max_attempts = parse_num(key, v, 1, 10)? as u32,
            "pan_display" => {
                c.pan_display = match v.to_ascii_lowercase().as_str() {
                    "last4" => PanDisplay::Last4,
                    "first6last4" => PanDisplay::First6Last4,
                    "none" => PanDisplay::None,
                    _ => {
                        return Err(err(
                            key,
                            format!(
                                "{} is not allowed; allowed: last4|first6last4|none",
                                shown(v)
                            ),
                        ))
                    }
                }
            }
            "show_expiry" => c.show_expiry = parse_bool(key, v)?,
            "show_postal_code" => c.show_postal_code = parse_bool(key, v)?,
            "show_generic" => c.show_generic = parse_bool(key, v)?,
            "postal_code_min_length" | "min_postal_code_length" => {
                c.postal_code_min_length = parse_num(key, v, 1, 16)? as usize
            }
            "postal_code_max_length" | "max_postal_code_length" => {
                c.postal_code_max_length = parse_num(key, v, 1, 16)? as usize
            }
            "reference_min_length" => {
                c.reference_min_length = parse_num(key, v, 1, MAX_GENERIC_LENGTH as u64)? as usize
            }
            "reference_max_length" => {
                c.reference_max_length = parse_num(key, v, 1, MAX_GENERIC_LENGTH as u64)? as usize
            }
            "amount_min_length" => c.amount_min_length = parse_num(key, v, 1, 18)? as usize,
            "amount_max_length" => c.amount_max_length = parse_num(key, v, 1, 18)? as usize,
            "expiry_max_years" => c.expiry_max_years = parse_num(key, v, 1, 50)? as u32,
            "dedup_window_ms" => c.dedup_window_ms = parse_num(key, v, 0, 2_000)?,
            "repeat_window_ms" => c.repeat_window_ms = parse_num(key, v, 0, 80)?,
            "charge_amount" | "amount" => {
                c.charge_amount = if v.eq_ignore_ascii_case("none") {
                    None
                } else {
                    Some(parse_num(key, v, 1, 999_999_999_999_999)?)
                }
            }
            "mode" | "mask_mode" => {
                self.masker.mode = match v.to_ascii_lowercase().as_str() {
                    "silence" => MaskMode::Silence,
                    "noise" => MaskMode::Noise,
                    "beep" => MaskMode::Beep,
                    _ => {
                        return Err(err(
                            key,
                            format!("{} is not allowed; allowed: silence|noise|beep", shown(v)),
                        ))
                    }
                }
            }
            "lookahead_ms" => self.masker.lookahead_ms = parse_num(key, v, 0, 100)? as u32,
            "allow_leaky_lookahead" => self.allow_leaky_lookahead = parse_bool(key, v)?,
            "recording" => {
                self.recording = RecordingMode::from_name(v).ok_or_else(|| {
                    err(
                        key,
                        format!("{} is not allowed; allowed: mask|pause", shown(v)),
                    )
                })?
            }
            "allowed_recording" => {
                let mut set = RecordingModes::default();
                for name in parse_list(v) {
                    set.insert(RecordingMode::from_name(name).ok_or_else(|| {
                        err(
                            key,
                            format!("{} is not allowed; allowed: mask, pause", shown(name)),
                        )
                    })?);
                }
                if set.is_empty() {
                    return Err(err(key, "needs at least one value; allowed: mask, pause"));
                }
                self.allowed_recording = set;
            }
            "notch" => self.masker.notch = parse_bool(key, v)?,
            "connector" => {
                self.connector = if v.is_empty() || v.eq_ignore_ascii_case("none") {
                    Some("none".to_string())
                } else {
                    Some(v.to_string())
                }
            }
            _ => {
                return Err(err(
                    key,
                    "unknown key (see docs/capture.md \"Configuration keys\" for the key table)",
                ))
            }
        }
        Ok(())
    }

    /// Sets a pair from a named section: `general` (or empty) is [`Config::set`], any other
    /// section name is a connector profile of that name.
    pub fn set_in_section(
        &mut self,
        section: &str,
        key: &str,
        value: &str,
    ) -> Result<(), ConfigError> {
        let s = section.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("general") || s.eq_ignore_ascii_case("settings") {
            self.set(key, value)
        } else {
            self.set_connector(s, key, value)
        }
    }

    /// Sets one key of connector profile `profile` (created on first use).
    pub fn set_connector(
        &mut self,
        profile: &str,
        key: &str,
        value: &str,
    ) -> Result<(), ConfigError> {
        let name = profile.trim();
        if name.is_empty()
            || name.eq_ignore_ascii_case("none")
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(
                &format!("connector.{name}"),
                "profile names use letters, digits, '-' and '_' (and 'none' is reserved)",
            ));
        }
        let full = format!("connector.{name}.{}", key.trim());
        let idx = match self.connectors.iter().position(|p| p.name == name) {
            Some(i) => i,
            None => {
                self.connectors.push(ConnectorProfile {
                    name: name.to_string(),
                    timeout_ms: 10_000,
                    currency_code: "USD".to_string(),
                    token_type: "reusable".to_string(),
                    ..ConnectorProfile::default()
                });
                self.connectors.len() - 1
            }
        };
        let p = &mut self.connectors[idx];
        let v = value.trim();
        let opt = |v: &str| {
            if v.is_empty() {
                None
            } else {
                Some(v.to_string())
            }
        };
        match norm(key).as_str() {
            "url" => {
                let lv = v.to_ascii_lowercase();
                if !lv.starts_with("https://") || v.len() < 10 {
                    return Err(err(&full, format!("{} is not an https:// URL (card data never travels unencrypted); use https://host/path", shown(v))));
                }
                p.url = v.to_string();
            }
            "method" => {
                p.method = match v.to_ascii_lowercase().as_str() {
                    "charge" => PaymentMethod::Charge,
                    "tokenize" => PaymentMethod::Tokenize,
                    _ => return Err(err(&full, format!("{} is not allowed; allowed: charge|tokenize", shown(v)))),
                }
            }
            "timeout_ms" => p.timeout_ms = parse_num(&full, v, 100, 120_000)?,
            "ca_file" => p.ca_file = opt(v),
            "client_cert_file" => p.client_cert_file = opt(v),
            "client_key_file" => p.client_key_file = opt(v),
            "username" => p.username = opt(v),
            // Never echo a password value in an error.
            "password" => p.password = opt(v),
            "currency_code" | "currency" => {
                if v.len() != 3 || !v.chars().all(|c| c.is_ascii_alphabetic()) {
                    return Err(err(&full, format!("{} is not an ISO 4217 code; use three letters, e.g. USD", shown(v))));
                }
                p.currency_code = v.to_ascii_uppercase();
            }
            "description" => p.description = short(v, 256),
            "token_type" => {
                let lv = v.to_ascii_lowercase();
                if !matches!(lv.as_str(), "reusable" | "one-time" | "payment-method") {
                    return Err(err(&full, format!("{} is not allowed; allowed: reusable|one-time|payment-method", shown(v))));
                }
                p.token_type = lv;
            }
            _ => {
                return Err(err(
                    &full,
                    "unknown connector key; allowed: url, method, timeout_ms, ca_file, client_cert_file, client_key_file, username, password, currency_code, description, token_type",
                ))
            }
        }
        Ok(())
    }

    /// The configuration for ONE call: this (the admin's) configuration narrowed by a per-call
    /// option string (dialplan app argument, AMI `Options`, `uuid_secure_pay <uuid> start ...`,
    /// the agent service's `start_options`). Every per-call option string goes through here.
    ///
    /// Syntax: `key=value` items separated by `,` `;` `|` or whitespace; a bare word continues
    /// the list value of the previous list key, so
    /// `fields=payment-card-number,expiration-date,security-code,mode=beep` works.
    ///
    /// **Admin decides, agent chooses**: per call an option may only pick or narrow what the
    /// admin configured (see [`per_call_rule`] and docs/security.md "Per-call options"): a connector
    /// profile by name, a subset of the allowed fields and brands, the mask mode, keys,
    /// timeouts and attempts up to the admin's values, less display (`pan_display` towards
    /// `none`, `show_*` off), length bounds inside the admin's. Anything that changes where
    /// card data goes (`connector.*`), TLS trust, widens what is shown or weakens the masking
    /// is refused with an error naming the key. On error `self` is untouched and no config is
    /// returned.
    pub fn for_call(&self, opts: &str) -> Result<Config, ConfigError> {
        let pairs = option_pairs(opts)?;
        let mut c = self.clone();
        // Keys that change where card data goes are named first, whatever their position.
        for (k, v) in pairs
            .iter()
            .filter(|(k, _)| norm(k).starts_with("connector."))
        {
            c.narrow(self, k, v)?;
        }
        for (k, v) in &pairs {
            c.narrow(self, k, v)?;
        }
        c.resolve()?;
        Ok(c)
    }

    /// One per-call `key=value` on `self` (a clone of `admin`).
    fn narrow(&mut self, admin: &Config, key: &str, v: &str) -> Result<(), ConfigError> {
        let k = norm(key);
        let refuse = |why: &str| {
            Err(err(
                key,
                format!(
                    "not allowed per call: {why}; only the admin sets it (secure_pay config file)"
                ),
            ))
        };
        if k.starts_with("connector.") {
            return refuse("it changes where card data goes or whom the connection trusts (connector profiles, URL, TLS CA and client certificates, credentials); per call only connector=<profile name> picks one of the admin's profiles");
        }
        let a = &admin.capture;
        match per_call_rule(&k) {
            PerCall::Free => self.set(key, v),
            PerCall::Connector => {
                let name = v.trim();
                if !(name.is_empty()
                    || name.eq_ignore_ascii_case("none")
                    || admin.connectors.iter().any(|p| p.name == name))
                {
                    let names: Vec<&str> =
                        admin.connectors.iter().map(|p| p.name.as_str()).collect();
                    return Err(err(
                        key,
                        format!(
                            "no connector profile named {}; defined: {}",
                            shown(name),
                            if names.is_empty() {
                                "none".to_string()
                            } else {
                                names.join(", ")
                            }
                        ),
                    ));
                }
                self.set(key, v)
            }
            PerCall::Fields => {
                self.set(key, v)?;
                let list = if k == "allowed_fields" {
                    &self.capture.allowed_fields
                } else {
                    &self.capture.fields
                };
                match list.iter().find(|f| !a.allowed_fields.contains(*f)) {
                    Some(f) => Err(err(
                        key,
                        format!(
                            "field {} is not allowed on this call; the admin allows: {} (admin key allowed_fields)",
                            f.name(),
                            a.allowed_fields.to_header()
                        ),
                    )),
                    None => Ok(()),
                }
            }
            PerCall::Brands => {
                self.set(key, v)?;
                match self
                    .capture
                    .allowed_brands
                    .iter()
                    .find(|b| !a.allowed_brands.contains(b))
                {
                    Some(b) => Err(err(
                        key,
                        format!("card brand {} is not allowed by the admin", b.name()),
                    )),
                    None => Ok(()),
                }
            }
            PerCall::AtMost => {
                self.set(key, v)?;
                let c = &self.capture;
                let (new, max) = match k.as_str() {
                    "first_digit_timeout_ms" => {
                        (c.first_digit_timeout_ms, a.first_digit_timeout_ms)
                    }
                    "inter_digit_timeout_ms" | "timeout_ms" => {
                        (c.inter_digit_timeout_ms, a.inter_digit_timeout_ms)
                    }
                    "session_timeout_ms" => (c.session_timeout_ms, a.session_timeout_ms),
                    "max_attempts" => (u64::from(c.max_attempts), u64::from(a.max_attempts)),
                    "postal_code_max_length" | "max_postal_code_length" => (
                        c.postal_code_max_length as u64,
                        a.postal_code_max_length as u64,
                    ),
                    "reference_max_length" => {
                        (c.reference_max_length as u64, a.reference_max_length as u64)
                    }
                    "amount_max_length" => (c.amount_max_length as u64, a.amount_max_length as u64),
                    _ => return refuse("no narrowing rule"),
                };
                if new > max {
                    return Err(err(
                        key,
                        format!(
                            "{new} is more than the admin's {max}; per call it may only be lowered"
                        ),
                    ));
                }
                Ok(())
            }
            PerCall::AtLeast => {
                self.set(key, v)?;
                let c = &self.capture;
                let (new, min) = match k.as_str() {
                    "postal_code_min_length" | "min_postal_code_length" => {
                        (c.postal_code_min_length, a.postal_code_min_length)
                    }
                    "reference_min_length" => (c.reference_min_length, a.reference_min_length),
                    "amount_min_length" => (c.amount_min_length, a.amount_min_length),
                    _ => return refuse("no narrowing rule"),
                };
                if new < min {
                    return Err(err(
                        key,
                        format!(
                            "{new} is less than the admin's {min}; per call it may only be raised"
                        ),
                    ));
                }
                Ok(())
            }
            PerCall::PanDisplay => {
                self.set(key, v)?;
                let rank = |p: PanDisplay| p.max_revealed();
                if rank(self.capture.pan_display) > rank(a.pan_display) {
                    return Err(err(
                        key,
                        format!(
                            "{} shows more of the card number than the admin's {}; per call it may only show less (last4 -> none)",
                            self.capture.pan_display.name(),
                            a.pan_display.name()
                        ),
                    ));
                }
                Ok(())
            }
            PerCall::ShowOff => {
                self.set(key, v)?;
                let c = &self.capture;
                let (new, adm) = match k.as_str() {
                    "show_expiry" => (c.show_expiry, a.show_expiry),
                    "show_postal_code" => (c.show_postal_code, a.show_postal_code),
                    "show_generic" => (c.show_generic, a.show_generic),
                    _ => return refuse("no narrowing rule"),
                };
                if new && !adm {
                    return Err(err(
                        key,
                        "shows more than the admin allows; per call it may only be switched off",
                    ));
                }
                Ok(())
            }
            PerCall::Lookahead => {
                self.set(key, v)?;
                let floor = admin
                    .masker
                    .lookahead_ms
                    .min(Masker::min_leak_free_lookahead_ms());
                if self.masker.lookahead_ms < floor {
                    return Err(err(
                        key,
                        format!(
                            "{} ms is below the leak-free minimum of {} ms (the head of each tone would reach the agent); per call the look-ahead may only stay at or above {floor} ms",
                            self.masker.lookahead_ms,
                            Masker::min_leak_free_lookahead_ms()
                        ),
                    ));
                }
                Ok(())
            }
            PerCall::Recording => {
                self.set(key, v)?;
                let allowed = admin.allowed_recording_modes();
                if !allowed.contains(self.recording) {
                    return Err(err(
                        key,
                        format!(
                            "{} is not allowed on this call; the admin allows: {} (admin keys recording, allowed_recording)",
                            self.recording.name(),
                            allowed.to_header()
                        ),
                    ));
                }
                Ok(())
            }
            PerCall::NotchOn => {
                self.set(key, v)?;
                if admin.masker.notch && !self.masker.notch {
                    return Err(err(
                        key,
                        "the admin turned the DTMF band-stop on; per call it may only be switched on",
                    ));
                }
                Ok(())
            }
            PerCall::AdminOnly => {
                // An unknown key gets the setter's "unknown key" error; a known one is refused.
                Config::default().set(key, v)?;
                refuse("it is an admin setting")
            }
        }
    }

    /// Cross-key checks and connector selection (copies the chosen profile into
    /// `capture.connector`). Call after loading all pairs.
    pub fn resolve(&mut self) -> Result<(), ConfigError> {
        let c = &self.capture;
        for (kmin, kmax, min, max) in [
            (
                "postal_code_min_length",
                "postal_code_max_length",
                c.postal_code_min_length,
                c.postal_code_max_length,
            ),
            (
                "reference_min_length",
                "reference_max_length",
                c.reference_min_length,
                c.reference_max_length,
            ),
            (
                "amount_min_length",
                "amount_max_length",
                c.amount_min_length,
                c.amount_max_length,
            ),
        ] {
            if min > max {
                return Err(err(kmin, format!("{min} is greater than {kmax} ({max})")));
            }
        }
        if c.terminator.is_some() && c.terminator == c.clear_key {
            return Err(err("clear_key", "must differ from terminator"));
        }
        let min_la = Masker::min_leak_free_lookahead_ms();
        if self.masker.lookahead_ms < min_la && !self.allow_leaky_lookahead {
            return Err(err(
                "lookahead_ms",
                format!(
                    "{} ms is below the leak-free minimum of {min_la} ms: the first milliseconds of each tone reach the agent and recordings, enough for some decoders; use {min_la} or more, or set allow_leaky_lookahead = yes to accept that",
                    self.masker.lookahead_ms
                ),
            ));
        }
        // The admin's required fields are always allowed.
        let fields = self.capture.fields.clone();
        for f in fields.iter() {
            self.capture.allowed_fields.push(f);
        }
        let chosen = match self.connector.as_deref() {
            Some("none") => None,
            Some(name) => match self.connectors.iter().find(|p| p.name == name) {
                Some(p) => Some(p),
                None => {
                    let names: Vec<&str> =
                        self.connectors.iter().map(|p| p.name.as_str()).collect();
                    return Err(err(
                        "connector",
                        format!(
                            "no connector profile named {}; defined: {}",
                            shown(name),
                            if names.is_empty() {
                                "none".to_string()
                            } else {
                                names.join(", ")
                            }
                        ),
                    ));
                }
            },
            None if self.connectors.len() == 1 => self.connectors.first(),
            None => None,
        };
        if let Some(p) = chosen {
            if p.url.is_empty() {
                return Err(err(
                    &format!("connector.{}.url", p.name),
                    "is required for a connector profile",
                ));
            }
            if p.client_cert_file.is_some() != p.client_key_file.is_some() {
                return Err(err(
                    &format!("connector.{}.client_key_file", p.name),
                    "client_cert_file and client_key_file must be set together",
                ));
            }
        }
        self.capture.connector = chosen.cloned();
        Ok(())
    }

    /// The recording modes a per-call `recording=` may choose: the admin's `recording` plus
    /// `allowed_recording`.
    pub fn allowed_recording_modes(&self) -> RecordingModes {
        let mut m = self.allowed_recording;
        m.insert(self.recording);
        m
    }

    /// The connector profile submit will use, if any (after [`Config::resolve`]).
    pub fn active_connector(&self) -> Option<&ConnectorProfile> {
        self.capture.connector.as_ref()
    }
}
