//! Agent/dialplan commands and their text form (FreeSWITCH `uuid_secure_pay <uuid> <verb>
//! [args]`, Asterisk AMI `Command:` / dialplan app argument).
//!
//! Grammar (case-insensitive verbs; extra whitespace ignored):
//! `start [options]` | `capture <field>` | `clear` | `restart` | `submit` | `cancel` | `stop` |
//! `status`. `options` is the option string of
//! [`Config::for_call`](crate::core::config::Config::for_call) (per call it may only narrow).

use crate::core::capture::field::{FieldKind, FieldList};
use crate::core::config::ConfigError;

/// A command for a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Start secure capture with an option string (handled by the adapter, which creates the
    /// session; sent to a running session it is refused with `AlreadyStarted`).
    Start(String),
    /// (Re)capture a field now: wipes that field and makes it the active one.
    Capture(FieldKind),
    /// Wipe the digits of the active field.
    Clear,
    /// Wipe everything and capture again from the first required field.
    Restart,
    /// Hand the captured card to the connector.
    Submit,
    /// Abandon the payment: wipe everything, emit `cancel`, session finished.
    Cancel,
    /// End secure capture (reason `agent`): wipe everything, emit `stop`, session finished.
    Stop,
    /// Emit a masked `status` event.
    Status,
}

impl Command {
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Start(_) => "start",
            Command::Capture(_) => "capture",
            Command::Clear => "clear",
            Command::Restart => "restart",
            Command::Submit => "submit",
            Command::Cancel => "cancel",
            Command::Stop => "stop",
            Command::Status => "status",
        }
    }
}

/// Why a command was refused. `Display` is a one-line message for the API/AMI response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    Empty,
    UnknownVerb(String),
    UnknownField(String),
    MissingArgument {
        verb: &'static str,
        what: &'static str,
    },
    UnexpectedArgument {
        verb: &'static str,
    },
    /// `capture <field>` for a field the admin did not allow on this call.
    FieldNotAllowed {
        field: FieldKind,
        allowed: FieldList,
    },
    /// No secure capture session on this channel (returned by adapters).
    NoSession,
    AlreadyStarted,
    /// `clear` with no field being captured.
    NoActiveField,
    /// `submit` before every required field is valid.
    NotComplete {
        missing: FieldList,
    },
    /// `submit` with no connector profile configured; the captured data is kept.
    NoConnector,
    /// A payment hand-off is in progress.
    SubmitInProgress,
    /// The payment was already handed off; `restart` or `capture` to take a new one.
    AlreadySubmitted,
    /// The session has ended.
    Finished,
    BadOptions(ConfigError),
}

impl std::fmt::Display for CommandError {
    /// Through the outgoing guard (the message can echo input): no PAN-like run leaves whole.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = String::new();
        self.write_raw(&mut text)?;
        f.write_str(&crate::core::guard::redact_pans(&text))
    }
}

impl CommandError {
    fn write_raw(&self, f: &mut dyn std::fmt::Write) -> std::fmt::Result {
        match self {
            CommandError::Empty => write!(f, "empty command; verbs: start, capture, clear, restart, submit, cancel, stop, status"),
            CommandError::UnknownVerb(v) => write!(
                f,
                "unknown command '{v}'; verbs: start, capture, clear, restart, submit, cancel, stop, status"
            ),
            CommandError::UnknownField(v) => {
                write!(f, "unknown field '{v}'; fields: {}", FieldKind::all_names())
            }
            CommandError::MissingArgument { verb, what } => write!(f, "'{verb}' needs {what}"),
            CommandError::UnexpectedArgument { verb } => write!(f, "'{verb}' takes no argument"),
            CommandError::FieldNotAllowed { field, allowed } => write!(
                f,
                "field '{}' is not allowed on this call; allowed: {} (admin key allowed_fields)",
                field.name(),
                allowed.to_header()
            ),
            CommandError::NoSession => write!(f, "no secure capture session on this channel"),
            CommandError::AlreadyStarted => write!(f, "secure capture is already running on this channel"),
            CommandError::NoActiveField => write!(f, "no field is being captured"),
            CommandError::NotComplete { missing } => {
                write!(f, "cannot submit: missing or invalid: {}", missing.to_header())
            }
            CommandError::NoConnector => write!(
                f,
                "cannot submit: no payment connector configured (data kept until cancel or stop)"
            ),
            CommandError::SubmitInProgress => write!(f, "a payment submission is in progress"),
            CommandError::AlreadySubmitted => {
                write!(f, "the payment was already submitted; use restart or capture for a new one")
            }
            CommandError::Finished => write!(f, "the secure capture session has ended"),
            CommandError::BadOptions(e) => write!(f, "bad start options: {e}"),
        }
    }
}

impl std::error::Error for CommandError {}

/// Truncated copy of user input for error messages.
fn echo(s: &str) -> String {
    s.chars().take(32).collect()
}

/// Parses `verb [args]`.
pub fn parse_command(verb_and_args: &str) -> Result<Command, CommandError> {
    let s = verb_and_args.trim();
    let (verb, rest) = match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    };
    if verb.is_empty() {
        return Err(CommandError::Empty);
    }
    let verb_l = verb.to_ascii_lowercase();
    let no_arg = |c: Command| {
        if rest.is_empty() {
            Ok(c)
        } else {
            Err(CommandError::UnexpectedArgument { verb: c.verb() })
        }
    };
    match verb_l.as_str() {
        "start" => Ok(Command::Start(rest.to_string())),
        "capture" => {
            if rest.is_empty() {
                return Err(CommandError::MissingArgument {
                    verb: "capture",
                    what: "a field name",
                });
            }
            if rest.split_whitespace().count() > 1 {
                return Err(CommandError::UnknownField(echo(rest)));
            }
            FieldKind::from_name(rest)
                .map(Command::Capture)
                .ok_or_else(|| CommandError::UnknownField(echo(rest)))
        }
        "clear" => no_arg(Command::Clear),
        "restart" => no_arg(Command::Restart),
        "submit" => no_arg(Command::Submit),
        "cancel" => no_arg(Command::Cancel),
        "stop" => no_arg(Command::Stop),
        "status" => no_arg(Command::Status),
        _ => Err(CommandError::UnknownVerb(echo(verb))),
    }
}
