//! The secure-pay-freeswitch Debian package (scripts/package freeswitch, docs/packages.md) on a
//! real FreeSWITCH of the prefix it is built for: a private FreeSWITCH loads the packaged
//! mod_secure_pay.so (unpacked from the .deb, mapped from there) with the packaged
//! secure_pay.conf.xml and puts a call in secure mode with the packaged connector profile.
//! Control: an instance of the test build does not map the packaged file.
//!
//! Run: `FREESWITCH_PREFIX=/opt/freeswitch cargo test --release --features freeswitch --test
//! package_freeswitch -- --test-threads=1` (scripts/test does, after the FreeSWITCH suites).
#![cfg(feature = "freeswitch")]

mod freeswitch_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use freeswitch_support::*;

fn ok(cmd: &mut Command) -> String {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn start_event(ev: &mut Esl, uuid: &str, within: Duration) -> Option<EslEvent> {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let e = ev.next_event(left)?;
        if e.get("Event-Subclass") == Some("secure_pay::start") && e.get("Unique-ID") == Some(uuid)
        {
            return Some(e);
        }
    }
    None
}

#[test]
fn packaged_module_and_config_run_in_the_prefix_freeswitch() {
    let prefix =
        prefix().expect("no FreeSWITCH: run scripts/setup-freeswitch or set FREESWITCH_PREFIX");
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = ok(Command::new(repo.join("scripts/package"))
        .arg("freeswitch")
        .env("FREESWITCH_PREFIX", &prefix)
        .current_dir(&repo));
    let deb = out
        .lines()
        .find_map(|l| l.strip_prefix("deb secure-pay-freeswitch "))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("scripts/package freeswitch: no deb line: {out}"));
    let tree = std::env::temp_dir().join(format!("sp-package-fs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tree);
    ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree));
    let pc = format!("{}/lib/pkgconfig", prefix.display());
    let var = |v: &str| {
        ok(Command::new("pkg-config")
            .args(["--variable", v, "freeswitch"])
            .env("PKG_CONFIG_PATH", &pc))
        .trim()
        .to_owned()
    };
    let in_tree = |abs: &str| tree.join(Path::new(abs).strip_prefix("/").unwrap());
    let so = in_tree(&var("modulesdir")).join("mod_secure_pay.so");
    let conf = in_tree(&var("confdir")).join("autoload_configs/secure_pay.conf.xml");
    assert!(so.is_file(), "{} not in the package", so.display());
    assert!(conf.is_file(), "{} not in the package", conf.display());

    // control: an instance of the test build does not map the packaged file
    let so_str = so.to_str().unwrap().to_owned();
    let maps =
        |fs: &FreeSwitch| std::fs::read_to_string(format!("/proc/{}/maps", fs.pid())).unwrap();
    {
        let plain = FreeSwitch::start(&prefix, &Options::default());
        let m = maps(&plain);
        assert!(m.contains("mod_secure_pay.so"), "test build not mapped");
        assert!(
            !m.contains(&so_str),
            "packaged module mapped without being asked for"
        );
    }
    let fs = FreeSwitch::start(
        &prefix,
        &Options {
            secure_pay_conf_file: Some(conf.clone()),
            module: Some(so.clone()),
            ..Options::default()
        },
    );
    assert!(
        maps(&fs).contains(&so_str),
        "FreeSWITCH does not map {so_str}\n{}",
        fs.log_text()
    );
    let mut esl = fs.esl();
    let r = esl.api("module_exists mod_secure_pay");
    assert_eq!(r.trim(), "true", "module_exists: {r}");

    // it works, with the packaged config's connector profile
    let mut ev = fs.esl();
    ev.subscribe("plain CUSTOM secure_pay::start");
    let (_a, b) = originate_customer(&mut esl, "cust1");
    let r = esl.api(&format!("uuid_secure_pay {b} start"));
    assert!(r.starts_with("+OK"), "start: {r}");
    let st = start_event(&mut ev, &b, Duration::from_secs(5)).expect("secure_pay::start");
    assert_eq!(st.get("SecurePay-Connector"), Some("acme"));
    let _ = esl.api(&format!("uuid_kill {b}"));
    drop(fs);
    let _ = std::fs::remove_dir_all(&tree);
}
