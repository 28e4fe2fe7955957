//! Core-dump scanning for the memory tests (`tests/asterisk_memory.rs`,
//! `tests/freeswitch_memory.rs`): `gcore` of a live process, then a search for the test card's
//! digits as ASCII and as digit values 0-9.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// No '0' in the card, so value-encoded windows never match zero-filled memory by accident.
pub const PAN: &str = "4556737586899855";
pub const EXPIRY: &str = "1230";
pub const CVV: &str = "291";

/// The patterns searched for: every 8-digit window of the card and expiry+code, as ASCII and
/// as digit values.
pub fn patterns() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    let b = PAN.as_bytes();
    for i in 0..=b.len() - 8 {
        let w = &b[i..i + 8];
        v.push((format!("card[{i}..{}] ascii", i + 8), w.to_vec()));
        v.push((
            format!("card[{i}..{}] values", i + 8),
            w.iter().map(|c| c - b'0').collect(),
        ));
    }
    let ec = format!("{EXPIRY}{CVV}");
    v.push(("expiry+code ascii".into(), ec.as_bytes().to_vec()));
    v.push((
        "expiry+code values".into(),
        ec.bytes().map(|c| c - b'0').collect(),
    ));
    v
}

/// Names of the patterns found in `data` (one pass; patterns indexed by their first byte).
pub fn scan(data: &[u8]) -> Vec<String> {
    let pats = patterns();
    let mut by_first: Vec<Vec<usize>> = vec![Vec::new(); 256];
    for (k, (_, p)) in pats.iter().enumerate() {
        by_first[usize::from(p[0])].push(k);
    }
    let mut hit = vec![false; pats.len()];
    for (i, &b) in data.iter().enumerate() {
        for &k in &by_first[usize::from(b)] {
            let p = &pats[k].1;
            if !hit[k] && data.get(i..i + p.len()) == Some(p.as_slice()) {
                hit[k] = true;
            }
        }
    }
    pats.into_iter()
        .zip(hit)
        .filter(|(_, h)| *h)
        .map(|((n, _), _)| n)
        .collect()
}

/// `gcore` of the live process; returns the core file's path.
pub fn dump(pid: u32, tag: &str) -> PathBuf {
    let base = std::env::temp_dir().join(format!("sp-core-{tag}-{}", std::process::id()));
    let out = Command::new("gcore")
        .arg("-o")
        .arg(&base)
        .arg(pid.to_string())
        .output()
        .expect("run gcore");
    let core = PathBuf::from(format!("{}.{pid}", base.display()));
    assert!(
        core.is_file(),
        "gcore {pid} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    core
}

pub fn scan_core(core: &Path) -> Vec<String> {
    let data = std::fs::read(core).expect("read core");
    assert!(
        data.len() > 1_000_000,
        "core dump too small: {}",
        data.len()
    );
    let f = scan(&data);
    let _ = std::fs::remove_file(core);
    f
}

/// The scanner finds a card window as ASCII and as values, and the code next to the expiry as
/// values, in a synthetic buffer (positive control of the encodings).
pub fn self_test() {
    let mut buf = vec![0u8; 4096];
    assert!(scan(&buf).is_empty());
    buf[100..108].copy_from_slice(&PAN.as_bytes()[3..11]);
    let vals: Vec<u8> = PAN.bytes().map(|c| c - b'0').collect();
    buf[2000..2016].copy_from_slice(&vals);
    let ec: Vec<u8> = format!("{EXPIRY}{CVV}").bytes().map(|c| c - b'0').collect();
    buf[3000..3007].copy_from_slice(&ec);
    let f = scan(&buf);
    assert!(f.contains(&"card[3..11] ascii".to_string()), "{f:?}");
    assert!(f.contains(&"card[0..8] values".to_string()), "{f:?}");
    assert!(f.contains(&"expiry+code values".to_string()), "{f:?}");
}
