//! The module's panic hook (`secure_pay::panic_hook`, installed by both adapters at load): a
//! panic, caught (as `host::guard` does) or on a thread of ours, prints neither its message
//! nor its location. Each case runs in a child process (this test binary again) so the
//! default hook's output can be captured; the control shows the default hook does print both.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;

use secure_pay::panic_hook;

const SECRET: &str = "4111111111111111";

/// Runs only in a child process (see `panics_print_no_message_or_location`).
#[test]
fn panic_child() {
    let Ok(mode) = std::env::var("SP_PANIC_CHILD") else {
        return;
    };
    if mode == "hook" || mode == "restored" {
        panic_hook::install();
    }
    if mode == "restored" {
        panic_hook::remove();
    }
    let before = panic_hook::panics_seen();
    let r = catch_unwind(AssertUnwindSafe(|| -> i32 {
        panic!("card {SECRET} failed")
    }));
    assert!(r.is_err());
    let t = std::thread::spawn(|| {
        let v: Vec<u8> = Vec::new();
        let i = SECRET.len();
        v[i]
    });
    assert!(t.join().is_err());
    if mode == "hook" {
        assert_eq!(panic_hook::panics_seen() - before, 2);
    }
    eprintln!("child done");
}

fn child(mode: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", "panic_child", "--nocapture", "--test-threads=1"])
        .env("SP_PANIC_CHILD", mode)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{mode}: {all}");
    assert!(all.contains("child done"), "{mode}: {all}");
    all
}

#[test]
fn panics_print_no_message_or_location() {
    // Control: without the hook the default prints the message and the location.
    let plain = child("none");
    assert!(plain.contains(SECRET), "control: {plain}");
    assert!(plain.contains("tests/panic_hook.rs"), "control: {plain}");
    let hooked = child("hook");
    assert!(!hooked.contains(SECRET), "{hooked}");
    assert!(!hooked.contains("panic_hook.rs"), "{hooked}");
    assert!(!hooked.contains("panicked"), "{hooked}");
    assert!(!hooked.contains("index out of bounds"), "{hooked}");
    // Unload puts the previous (here: the default) hook back.
    let restored = child("restored");
    assert!(restored.contains(SECRET), "{restored}");
    // Without an install, remove does nothing (the test harness hook stays).
    panic_hook::remove();
}
