//! Fuzz entry points for the readers that take bytes from the network: the AMI message reader,
//! the event-socket frame reader (and the plain-event and channel-list decoders behind it),
//! and the HTTP request parser. Each feeds what it parsed on into the call tracker and the
//! page snapshot, and checks the limits the readers promise. Used by the cargo-fuzz targets
//! (fuzz/fuzz_targets/agent_*.rs) and, bounded, by tests/agent_fuzz.rs (proptest, in CI).
//! `Err` = a broken invariant; a panic is a bug of its own.

use std::io::Cursor;

use crate::ami::Message;
use crate::esl::{self, MAX_API_BODY};
use crate::http::{self, MAX_BODY};
use crate::state::Hub;

/// The call ids seen, so their snapshots can be rendered.
fn snapshots(hub: &Hub, ids: &[String]) -> Result<(), String> {
    for id in ids {
        if let Some((json, _)) = hub.snapshot(id) {
            serde_json::from_str::<serde_json::Value>(&json)
                .map_err(|e| format!("snapshot of {id:?} is not JSON: {e}"))?;
        }
    }
    Ok(())
}

/// AMI: messages until the end of the input (or an error), each applied to a tracker.
pub fn fuzz_ami(data: &[u8]) -> Result<(), String> {
    let hub = Hub::new();
    let mut r = Cursor::new(data);
    let mut ids = Vec::new();
    for _ in 0..=data.len() {
        match Message::read_from(&mut r) {
            Ok(Some(m)) => {
                if m.headers.len() > 256 {
                    return Err(format!("{} headers in one message", m.headers.len()));
                }
                if m.headers
                    .iter()
                    .any(|(k, v)| k.contains('\n') || v.contains('\n'))
                {
                    return Err("a header spans lines".into());
                }
                if let Some(u) = m.get("Uniqueid") {
                    ids.push(u.to_string());
                }
                hub.apply_event(&m);
                // echoing a value back (e.g. the channel into an action) never injects a line
                let _ = Message::new(&[("Channel", m.get("Channel").unwrap_or(""))]).to_wire();
            }
            Ok(None) | Err(_) => break,
        }
    }
    snapshots(&hub, &ids)
}

/// Event socket: frames until the end of the input (or an error); event bodies decoded and
/// applied, API bodies tried as a channel list.
pub fn fuzz_esl(data: &[u8]) -> Result<(), String> {
    let hub = Hub::new();
    let mut r = Cursor::new(data);
    let mut ids = Vec::new();
    for _ in 0..=data.len() {
        match esl::read_frame(&mut r) {
            Ok(Some(f)) => {
                if f.body.len() > (data.len() * 3).min(MAX_API_BODY * 3) {
                    // from_utf8_lossy can at most triple a byte (U+FFFD), never invent data
                    return Err(format!(
                        "a body of {} from {} bytes",
                        f.body.len(),
                        data.len()
                    ));
                }
                if let Some(m) = esl::event_message(&f.body) {
                    if let Some(u) = m.get("Uniqueid") {
                        ids.push(u.to_string());
                    }
                    hub.apply_event(&m);
                }
                if let Some(rows) = esl::channel_rows(&f.body) {
                    hub.resync_channels(&rows);
                    ids.extend(rows.into_iter().map(|(_, u, _)| u));
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    let _ = esl::url_decode(&String::from_utf8_lossy(data));
    snapshots(&hub, &ids)
}

/// HTTP: one request; what parses respects the head and body limits.
pub fn fuzz_http(data: &[u8]) -> Result<(), String> {
    let mut r = Cursor::new(data);
    if let Ok(req) = http::parse_request(&mut r) {
        if req.body.len() > MAX_BODY {
            return Err(format!("a body of {} bytes", req.body.len()));
        }
        if req.headers.len() > 64 {
            return Err(format!("{} headers", req.headers.len()));
        }
        if req.query.len() > 32 {
            return Err(format!("{} query parameters", req.query.len()));
        }
        let _ = req.header("Cookie");
        let _ = req.query("sig");
    }
    Ok(())
}
