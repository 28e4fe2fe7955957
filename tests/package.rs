//! The Debian packages (scripts/package, docs/packages.md), tested for real:
//! - secure-pay-asterisk is installed with dpkg into the project's Asterisk chroot and a private
//!   Asterisk loads res_secure_pay.so from the module dir the package put it in (its config and
//!   XML docs from where the package put them too), runs a secure call, and after `dpkg -r` /
//!   `--purge` the same setup finds no module (control);
//! - the secure-pay-agent unit passes `systemd-analyze verify` with no warning (controls: a typo'd
//!   directive warns, a missing binary fails);
//! - hostile: the unit drops core dumps and privileges (explicit directives and `systemd-analyze
//!   security` exposure), and a weakened copy is caught by the same checks; no package holds a
//!   key or certificate, and no config file that takes secrets is readable by others (the scan
//!   is shown to catch both on a planted tree).
//!
//! Needs root (chroot, dpkg in the chroot, file ownership) and scripts/setup-asterisk. Run:
//! `sudo cargo test --release --features asterisk --test package -- --test-threads=1`.
#![cfg(feature = "asterisk")]

mod asterisk;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use asterisk::{chroot_root, phone_dialplan, repo, Call, Instance, BASE_MODULES, WAIT};

const AST_PKG: &str = "secure-pay-asterisk";
const AGENT_PKG: &str = "secure-pay-agent";
const UNIT: &str = "secure-pay-agent.service";

fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "run as root: dpkg in the Asterisk chroot and file ownership checks need it"
    );
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(o.status.success(), "{cmd:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Builds a package with scripts/package once per test binary; returns the .deb path.
fn package(which: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(which) {
        return p.clone();
    }
    let out = ok(Command::new(repo().join("scripts/package"))
        .arg(which)
        .current_dir(repo()));
    let mut got = None;
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 3 && f[0] == "deb" {
            got = Some(PathBuf::from(f[2]));
        }
    }
    let deb =
        got.unwrap_or_else(|| panic!("scripts/package {which}: no `deb NAME PATH` line: {out}"));
    assert!(deb.is_file(), "{} missing", deb.display());
    built.insert(which.to_owned(), deb.clone());
    deb
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sp-package-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `dpkg-deb -R`: the file tree with its modes plus DEBIAN/ (control, conffiles, scripts).
fn unpack(deb: &Path, name: &str) -> PathBuf {
    let d = scratch(name);
    ok(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&d));
    d
}

fn field(deb: &Path, name: &str) -> String {
    ok(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))
        .trim()
        .to_owned()
}

/// `key => value` (or `key = value`) from an Asterisk config file.
fn ast_conf_value(conf: &str, key: &str) -> Option<String> {
    conf.lines().find_map(|l| {
        let l = l.split(';').next().unwrap_or("").trim();
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim_start_matches('>').trim().to_owned())
    })
}

fn chroot_cmd(args: &[&str]) -> Command {
    let mut c = Command::new("chroot");
    c.arg(chroot_root())
        .args([
            "/usr/bin/env",
            "-i",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "LC_ALL=C",
            "DEBIAN_FRONTEND=noninteractive",
        ])
        .args(args);
    c
}

/// Purges the package from the chroot when the test ends, however it ends.
struct Installed(&'static str);

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run(&mut chroot_cmd(&["dpkg", "--purge", self.0]));
    }
}

fn dpkg_status(pkg: &str) -> String {
    let o = run(&mut chroot_cmd(&[
        "dpkg-query",
        "-W",
        "-f",
        "${Status}",
        pkg,
    ]));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// A private Asterisk (scripts/asterisk-run) whose module dir, data dir and secure_pay.conf are
/// the system ones the package installed into: `astmoddir`/`astdatadir` of the chroot's own
/// asterisk.conf, /etc/asterisk/secure_pay.conf. res_secure_pay.so is loaded at boot by
/// modules.conf, from there only.
fn packaged_instance(name: &str, moddir: &str, datadir: &str) -> Instance {
    let dial = std::env::temp_dir().join(format!("sp-pkg-ext-{}.conf", std::process::id()));
    std::fs::write(&dial, phone_dialplan()).unwrap();
    let modules = format!("{BASE_MODULES} res_secure_pay.so");
    let dir = ok(Command::new(repo().join("scripts/asterisk-run"))
        .args(["new", name])
        .env("AST_DIALPLAN", &dial)
        .env("AST_MODULES", &modules));
    let _ = std::fs::remove_file(&dial);
    let dir = PathBuf::from(dir.trim());
    let conf_path = dir.join("etc/asterisk.conf");
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    let conf: String = conf
        .lines()
        .map(|l| {
            if l.starts_with("astmoddir") {
                format!("astmoddir => {moddir}")
            } else if l.starts_with("astdatadir") {
                format!("astdatadir => {datadir}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&conf_path, conf + "\n").unwrap();
    // the packaged config, as Asterisk inside the chroot sees it
    std::os::unix::fs::symlink(
        "/etc/asterisk/secure_pay.conf",
        dir.join("etc/secure_pay.conf"),
    )
    .unwrap();
    let d = dir.to_str().unwrap().to_owned();
    let started = run(Command::new(repo().join("scripts/asterisk-run")).args(["start", &d]));
    let info = ok(Command::new(repo().join("scripts/asterisk-run")).args(["info", &d]));
    let get = |k: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or("")
            .to_owned()
    };
    let inst = Instance {
        dir,
        ami_port: get("ami_port").parse().expect("ami port"),
        pid: get("pid").parse().unwrap_or(0),
    };
    assert!(
        started.status.success() && inst.pid != 0,
        "asterisk-run start: {}\n{}",
        text(&started),
        inst.log()
    );
    inst
}

fn module_count(inst: &Instance) -> String {
    inst.cli("module show like secure_pay")
}

#[test]
fn asterisk_package_installs_with_dpkg_and_asterisk_loads_it_from_the_package_dir() {
    require_root();
    let root = chroot_root();
    assert!(
        root.join("usr/sbin/asterisk").is_file(),
        "no Asterisk chroot at {}: run scripts/setup-asterisk",
        root.display()
    );
    let ast_conf = std::fs::read_to_string(root.join("etc/asterisk/asterisk.conf")).unwrap();
    let moddir = ast_conf_value(&ast_conf, "astmoddir").expect("astmoddir");
    let datadir = ast_conf_value(&ast_conf, "astdatadir").expect("astdatadir");
    let ast_version = ok(&mut chroot_cmd(&[
        "dpkg-query",
        "-W",
        "-f",
        "${Version}",
        "asterisk",
    ]));
    let buildopts = std::fs::read_to_string(root.join("usr/include/asterisk/buildopts.h")).unwrap();
    let abi = buildopts
        .lines()
        .find_map(|l| l.strip_prefix("#define AST_BUILDOPT_SUM "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("AST_BUILDOPT_SUM");

    // a clean start: a package left behind by a killed run would hide what this one installs
    let _ = run(&mut chroot_cmd(&["dpkg", "--purge", AST_PKG]));
    assert!(!root
        .join(moddir.trim_start_matches('/'))
        .join("res_secure_pay.so")
        .exists());

    let deb = package("asterisk");
    assert_eq!(field(&deb, "Package"), AST_PKG);
    let depends = field(&deb, "Depends");
    assert!(
        depends.contains(&format!("asterisk (= {ast_version})")),
        "Depends {depends:?} does not pin the Asterisk {ast_version} it was built against"
    );
    assert!(
        depends.contains(&format!("asterisk-abi-{abi}")),
        "Depends {depends:?} lacks asterisk-abi-{abi}"
    );
    assert!(depends.contains("libc6"), "Depends {depends:?}: no libc6");
    let tree = unpack(&deb, "ast-tree");
    let so_rel = format!("{}/res_secure_pay.so", moddir.trim_start_matches('/'));
    let packaged_so = std::fs::read(tree.join(&so_rel))
        .unwrap_or_else(|e| panic!("{so_rel} not in the package: {e}"));
    let conffiles = std::fs::read_to_string(tree.join("DEBIAN/conffiles")).unwrap_or_default();
    assert!(
        conffiles
            .lines()
            .any(|l| l == "/etc/asterisk/secure_pay.conf"),
        "secure_pay.conf is not a conffile: {conffiles:?}"
    );
    let doc_rel = format!(
        "{}/documentation/thirdparty/secure_pay-en_US.xml",
        datadir.trim_start_matches('/')
    );
    assert!(
        tree.join(&doc_rel).is_file(),
        "{doc_rel} not in the package"
    );

    // install with dpkg inside the chroot (its dependency check against the chroot's Asterisk)
    let inside = format!("/tmp/sp-package-{}.deb", std::process::id());
    std::fs::copy(&deb, root.join(inside.trim_start_matches('/'))).unwrap();
    let guard = Installed(AST_PKG);
    let inst_out = run(&mut chroot_cmd(&["dpkg", "-i", &inside]));
    let _ = std::fs::remove_file(root.join(inside.trim_start_matches('/')));
    assert!(inst_out.status.success(), "dpkg -i: {}", text(&inst_out));
    assert_eq!(dpkg_status(AST_PKG), "install ok installed");
    let listed = ok(&mut chroot_cmd(&["dpkg", "-L", AST_PKG]));
    assert!(
        listed
            .lines()
            .any(|l| l == format!("{moddir}/res_secure_pay.so")),
        "{listed}"
    );
    let so_host = root.join(&so_rel);
    assert_eq!(
        std::fs::read(&so_host).unwrap(),
        packaged_so,
        "installed module differs from the packaged one"
    );
    assert_eq!(std::fs::metadata(&so_host).unwrap().mode() & 0o7777, 0o644);
    // secure_pay.conf takes connector credentials: root:asterisk 0640 after postinst
    let conf_meta = std::fs::metadata(root.join("etc/asterisk/secure_pay.conf")).unwrap();
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    let ast_gid: u32 = group
        .lines()
        .find_map(|l| l.strip_prefix("asterisk:x:"))
        .and_then(|r| r.split(':').next())
        .and_then(|g| g.parse().ok())
        .expect("asterisk group in the chroot");
    assert_eq!(conf_meta.mode() & 0o7777, 0o640);
    assert_eq!((conf_meta.uid(), conf_meta.gid()), (0, ast_gid));

    {
        let inst = packaged_instance("pkg", &moddir, &datadir);
        let shown = module_count(&inst);
        assert!(
            shown.contains("res_secure_pay.so") && shown.contains("1 modules loaded"),
            "module show: {shown}\n{}",
            inst.log()
        );
        // the mapping Asterisk runs is the packaged file (path as seen inside the chroot)
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", inst.pid)).unwrap();
        let want = format!("{moddir}/res_secure_pay.so");
        assert!(maps.contains(&want), "asterisk did not map {want}");
        assert!(!maps.contains(&format!("{}/modules/res_secure_pay.so", inst.dir.display())));
        // settings from the packaged /etc/asterisk/secure_pay.conf, docs from the packaged XML
        let settings = inst.cli("securepay show settings");
        assert!(
            settings.contains("https://pay.example.com/charge"),
            "securepay show settings: {settings}"
        );
        let app = inst.cli("core show application SecurePay");
        assert!(
            app.contains("Start secure card capture (DTMF masking) on this channel."),
            "core show application SecurePay: {app}"
        );
        // and it works: a call goes into secure mode
        let mut ami = inst.ami();
        let c = Call::originate(&mut ami, "pkg1", &[]);
        let r = c.securepay(&mut ami, &[("Command", "start")]);
        assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
        ami.wait_event(WAIT, "SecurePayStart", &[("Channel", &c.customer)])
            .expect("SecurePayStart from the packaged module");
        let _ = ami.action(&[("Action", "Hangup"), ("Channel", &c.customer)]);
        std::thread::sleep(Duration::from_millis(200));
    }

    // upgrade: a newer version of the package keeps the admin's edit of secure_pay.conf and
    // its root:asterisk 0640
    let conf_host = root.join("etc/asterisk/secure_pay.conf");
    let mut edited = std::fs::read_to_string(&conf_host).unwrap();
    edited.push_str("; edited by the admin\n");
    std::fs::write(&conf_host, &edited).unwrap();
    let old_version = field(&deb, "Version");
    let new_version = format!("{old_version}.1");
    let control = tree.join("DEBIAN/control");
    let c = std::fs::read_to_string(&control).unwrap();
    std::fs::write(
        &control,
        c.replace(
            &format!("Version: {old_version}\n"),
            &format!("Version: {new_version}\n"),
        ),
    )
    .unwrap();
    let newer = root.join(format!("tmp/sp-package-up-{}.deb", std::process::id()));
    ok(Command::new("dpkg-deb")
        .args(["-b", "--root-owner-group"])
        .arg(&tree)
        .arg(&newer));
    let up = run(&mut chroot_cmd(&[
        "dpkg",
        "-i",
        &format!("/{}", newer.strip_prefix(&root).unwrap().display()),
    ]));
    let _ = std::fs::remove_file(&newer);
    assert!(up.status.success(), "upgrade: {}", text(&up));
    let installed_version = ok(&mut chroot_cmd(&[
        "dpkg-query",
        "-W",
        "-f",
        "${Version}",
        AST_PKG,
    ]));
    assert_eq!(installed_version, new_version);
    assert_eq!(std::fs::read_to_string(&conf_host).unwrap(), edited);
    let m = std::fs::metadata(&conf_host).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 0, ast_gid));

    // dpkg -r removes the module and keeps the conffile; --purge removes the conffile too
    ok(&mut chroot_cmd(&["dpkg", "-r", AST_PKG]));
    assert!(!so_host.exists(), "module left after dpkg -r");
    assert!(!root.join(&doc_rel).exists(), "docs left after dpkg -r");
    assert!(root.join("etc/asterisk/secure_pay.conf").exists());
    ok(&mut chroot_cmd(&["dpkg", "--purge", AST_PKG]));
    assert!(!root.join("etc/asterisk/secure_pay.conf").exists());
    assert_eq!(dpkg_status(AST_PKG), "");
    drop(guard);

    // control: the same private-Asterisk setup without the package loads no secure_pay module
    let _ = std::fs::write(root.join("etc/asterisk/secure_pay.conf"), "");
    let inst = packaged_instance("nopkg", &moddir, &datadir);
    let shown = module_count(&inst);
    let _ = std::fs::remove_file(root.join("etc/asterisk/secure_pay.conf"));
    assert!(
        shown.contains("0 modules loaded") && !shown.contains("res_secure_pay.so"),
        "without the package: {shown}"
    );
    drop(inst);
    let _ = std::fs::remove_dir_all(&tree);
}

// ---------------------------------------------------------------- agent unit

/// The unit file inside an unpacked package tree.
fn unit_in(tree: &Path) -> PathBuf {
    for d in ["lib/systemd/system", "usr/lib/systemd/system"] {
        let p = tree.join(d).join(UNIT);
        if p.is_file() {
            return p;
        }
    }
    panic!("{UNIT} not in the package tree {}", tree.display());
}

/// `systemd-analyze verify` with the unpacked package as root (so ExecStart's binary is the
/// packaged one), the host's own units copied beside it (sysinit.target, ...).
fn verify(tree: &Path, unit: &Path) -> Output {
    let units = unit.parent().unwrap();
    for e in std::fs::read_dir("/lib/systemd/system").unwrap().flatten() {
        let to = units.join(e.file_name());
        if !to.exists() && e.path().is_file() {
            let _ = std::fs::copy(e.path(), to);
        }
    }
    let inside = Path::new("/").join(unit.strip_prefix(tree).unwrap());
    run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", tree.display()))
        .arg(inside))
}

#[test]
fn agent_unit_passes_systemd_analyze_verify() {
    require_root();
    let deb = package("agent");
    assert_eq!(field(&deb, "Package"), AGENT_PKG);
    let tree = unpack(&deb, "agent-verify");
    let unit = unit_in(&tree);
    assert!(tree.join("usr/bin/secure-pay-agent").is_file());
    let o = verify(&tree, &unit);
    assert!(o.status.success(), "systemd-analyze verify: {}", text(&o));
    assert_eq!(text(&o).trim(), "", "systemd-analyze verify warned");

    // controls: the same check sees a misspelt directive and a missing binary
    let good = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(
        &unit,
        good.replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"),
    )
    .unwrap();
    let o = verify(&tree, &unit);
    assert!(
        text(&o).contains("NoNewPrivilege"),
        "a misspelt directive passed unnoticed: {}",
        text(&o)
    );
    std::fs::write(&unit, &good).unwrap();
    std::fs::remove_file(tree.join("usr/bin/secure-pay-agent")).unwrap();
    let o = verify(&tree, &unit);
    assert!(!o.status.success(), "verify passed without the binary");
    let _ = std::fs::remove_dir_all(&tree);
}

/// Every `Key=value` of the unit (all assignments, in order).
fn directives(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// What is missing for "no core dumps, no privileges, read-only system, own user, secrets
/// never on the command line or in the environment".
fn hardening_problems(unit: &str) -> Vec<String> {
    let d = directives(unit);
    let last = |k: &str| {
        d.iter()
            .rev()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.as_str())
    };
    let mut p = Vec::new();
    for (k, want) in [
        ("LimitCORE", "0"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("UMask", "0077"),
        ("User", "secure-pay-agent"),
    ] {
        if last(k) != Some(want) {
            p.push(format!("{k}={want} wanted, have {:?}", last(k)));
        }
    }
    if d.iter()
        .any(|(k, _)| k == "DynamicUser" || k == "RootDirectory")
    {
        p.push("unexpected DynamicUser/RootDirectory".into());
    }
    for (k, v) in &d {
        let lv = v.to_ascii_lowercase();
        if k == "Environment" && (lv.contains("_secret=") || lv.contains("password=")) {
            p.push(format!("secret in the environment: {k}={v}"));
        }
        if k == "ExecStart" && (lv.contains("secret=") || lv.contains("password")) {
            p.push(format!("secret on the command line: {v}"));
        }
    }
    for cred in ["link-secret", "pbx-secret"] {
        if !d
            .iter()
            .any(|(k, v)| k == "LoadCredential" && v.starts_with(&format!("{cred}:/etc/")))
        {
            p.push(format!("no LoadCredential={cred}:/etc/..."));
        }
    }
    p
}

/// `systemd-analyze security --offline`: (passes --threshold, overall exposure, failed checks)
fn security(unit: &Path, threshold: u32) -> (bool, f64, Vec<String>) {
    let o = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(format!("--threshold={threshold}"))
        .arg(unit));
    let out = text(&o);
    let exposure = out
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for "))
        .and_then(|(_, r)| r.split(": ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no exposure in: {out}"));
    let failed = out
        .lines()
        .filter(|l| l.trim_start().starts_with('✗'))
        .map(|l| l.trim().to_owned())
        .collect();
    (o.status.success(), exposure, failed)
}

#[test]
fn agent_unit_really_drops_core_dumps_and_privileges() {
    require_root();
    let deb = package("agent");
    let tree = unpack(&deb, "agent-hard");
    let unit = unit_in(&tree);
    let good = std::fs::read_to_string(&unit).unwrap();
    let problems = hardening_problems(&good);
    assert!(problems.is_empty(), "{problems:#?}");
    // systemd's own scoring: 0 = locked down, 10 = unprotected. 2.0 is "OK" territory.
    let (pass, exposure, failed) = security(&unit, 20);
    assert!(pass && exposure <= 2.0, "exposure {exposure}: {failed:#?}");
    for must in [
        "NoNewPrivileges",
        "ProtectSystem",
        "PrivateTmp",
        "User=",
        "CapabilityBoundingSet=~CAP_SYS_ADMIN",
        "CapabilityBoundingSet=~CAP_SYS_PTRACE",
        "RestrictSUIDSGID",
        "ProtectHome",
        "MemoryDenyWriteExecute",
    ] {
        assert!(
            !failed.iter().any(|f| f.contains(must)),
            "{must} flagged by systemd-analyze security: {failed:#?}"
        );
    }

    // hostile control: the unit with its hardening stripped (an admin's careless override)
    // is caught by both checks, naming what is missing
    let weak: String = good
        .lines()
        .filter(|l| {
            !(l.starts_with("LimitCORE")
                || l.starts_with("NoNewPrivileges")
                || l.starts_with("Protect")
                || l.starts_with("Private")
                || l.starts_with("Capability")
                || l.starts_with("User=")
                || l.starts_with("SystemCall")
                || l.starts_with("Restrict"))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let weak = weak + "\nEnvironment=SECURE_PAY_AMI_SECRET=hunter2\n";
    std::fs::write(&unit, &weak).unwrap();
    let problems = hardening_problems(&weak);
    for want in [
        "LimitCORE",
        "NoNewPrivileges",
        "ProtectSystem",
        "User",
        "environment",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "weakened unit: {want} not flagged: {problems:#?}"
        );
    }
    let (pass, exposure, failed) = security(&unit, 20);
    assert!(!pass && exposure > 2.0, "weakened unit scored {exposure}");
    assert!(
        failed.iter().any(|f| f.contains("NoNewPrivileges")),
        "{failed:#?}"
    );
    let _ = std::fs::remove_dir_all(&tree);
}

/// Installed into the chroot with dpkg: postinst makes the system user and a root-only secrets
/// directory; the service user cannot read a secret there (root can: control); purge removes
/// the directory.
#[test]
fn agent_package_makes_its_user_and_a_secret_dir_the_user_cannot_read() {
    require_root();
    let root = chroot_root();
    let deb = package("agent");
    let had_user = std::fs::read_to_string(root.join("etc/passwd"))
        .unwrap()
        .lines()
        .any(|l| l.starts_with("secure-pay-agent:"));
    let _ = run(&mut chroot_cmd(&["dpkg", "--purge", AGENT_PKG]));
    let inside = format!("/tmp/sp-package-agent-{}.deb", std::process::id());
    std::fs::copy(&deb, root.join(inside.trim_start_matches('/'))).unwrap();
    let guard = Installed(AGENT_PKG);
    let o = run(&mut chroot_cmd(&["dpkg", "-i", &inside]));
    let _ = std::fs::remove_file(root.join(inside.trim_start_matches('/')));
    assert!(o.status.success(), "dpkg -i: {}", text(&o));
    assert_eq!(dpkg_status(AGENT_PKG), "install ok installed");

    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("secure-pay-agent:"))
        .expect("postinst made no secure-pay-agent user");
    let f: Vec<&str> = user.split(':').collect();
    let uid: u32 = f[2].parse().unwrap();
    assert!(uid != 0 && uid < 1000, "not a system user: {user}");
    assert_eq!(f[6], "/usr/sbin/nologin", "{user}");
    let dir = root.join("etc/secure-pay-agent");
    let m = std::fs::metadata(&dir).expect("postinst made no /etc/secure-pay-agent");
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o700, 0, 0));
    let secret = dir.join("link-secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    let link = |as_user: bool| {
        let mut args = vec![];
        if as_user {
            args.extend([
                "setpriv",
                "--reuid=secure-pay-agent",
                "--regid=secure-pay-agent",
                "--clear-groups",
            ]);
        }
        args.extend([
            "/usr/bin/secure-pay-agent",
            "link",
            "--call",
            "pkg-1",
            "--secret-file",
            "/etc/secure-pay-agent/link-secret",
        ]);
        run(&mut chroot_cmd(&args))
    };
    // control: root (systemd's LoadCredential= reads as root) mints a link from it
    let o = link(false);
    assert!(
        o.status.success() && text(&o).contains("http://127.0.0.1:8090/"),
        "as root: {}",
        text(&o)
    );
    // the service user itself cannot read the secret
    let o = link(true);
    assert!(
        !o.status.success(),
        "the service user read the secret: {}",
        text(&o)
    );
    assert!(text(&o).contains("ermission denied"), "{}", text(&o));

    ok(&mut chroot_cmd(&["dpkg", "--purge", AGENT_PKG]));
    assert!(!dir.exists(), "purge left /etc/secure-pay-agent");
    assert!(!root.join("usr/bin/secure-pay-agent").exists());
    drop(guard);
    if !had_user {
        let _ = run(&mut chroot_cmd(&["userdel", "secure-pay-agent"]));
        let _ = run(&mut chroot_cmd(&["groupdel", "secure-pay-agent"]));
    }
}

// ---------------------------------------------------------------- keys and secrets

const KEY_EXTENSIONS: &[&str] = &[
    "pem", "key", "crt", "cer", "der", "p12", "pfx", "csr", "jks",
];

/// A PEM block: "-----BEGIN <LABEL>-----" then a base64 line (not just the marker strings a
/// PEM parser carries in its code).
fn has_pem_block(data: &[u8]) -> bool {
    let marker = b"-----BEGIN ";
    let mut i = 0;
    while let Some(pos) = data[i..].windows(marker.len()).position(|w| w == marker) {
        let start = i + pos + marker.len();
        let rest = &data[start..];
        let label_len = rest
            .iter()
            .take_while(|b| b.is_ascii_uppercase() || **b == b' ')
            .count();
        let after = &rest[label_len..];
        if label_len > 0 && after.starts_with(b"-----") {
            let body = after[5..].strip_prefix(b"\r").unwrap_or(&after[5..]);
            if let Some(body) = body.strip_prefix(b"\n") {
                let b64 = body
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'+' || **b == b'/')
                    .count();
                if b64 >= 16 {
                    return true;
                }
            }
        }
        i = start;
    }
    false
}

/// A line that sets (or shows where to set) a secret: `password = x`, `secret = x`,
/// `<param name="password" value=...>`, `client_key_file = ...`.
fn carries_secret_setting(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        ["password", "secret", "key_file", "api_key", "token"]
            .iter()
            .any(|k| {
                l.match_indices(k).any(|(i, _)| {
                    let after = l[i + k.len()..].trim_start_matches([' ', '\t', '"']);
                    after.starts_with('=') || after.starts_with("value=")
                })
            })
    })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            walk(&p, out);
        } else if ft.is_file() {
            out.push(p);
        }
    }
}

/// Keys/certificates anywhere, world-writable files, and config files (conffiles, anything
/// under etc/) that take secrets and are readable by others.
fn secret_problems(tree: &Path) -> Vec<String> {
    let conffiles = std::fs::read_to_string(tree.join("DEBIAN/conffiles")).unwrap_or_default();
    let mut files = Vec::new();
    walk(tree, &mut files);
    let mut p = Vec::new();
    for f in files {
        let rel = f.strip_prefix(tree).unwrap();
        if rel.starts_with("DEBIAN") {
            continue;
        }
        let abs = format!("/{}", rel.display());
        let mode = std::fs::metadata(&f).unwrap().mode() & 0o7777;
        let data = std::fs::read(&f).unwrap();
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        if KEY_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) {
            p.push(format!("{abs}: key/certificate file"));
        }
        if has_pem_block(&data) {
            p.push(format!("{abs}: holds a PEM key or certificate"));
        }
        if mode & 0o002 != 0 {
            p.push(format!("{abs}: world-writable ({mode:o})"));
        }
        let is_config = conffiles.lines().any(|c| c == abs) || rel.starts_with("etc");
        if is_config && mode & 0o004 != 0 && carries_secret_setting(&String::from_utf8_lossy(&data))
        {
            p.push(format!(
                "{abs}: takes secrets but is readable by others ({mode:o})"
            ));
        }
    }
    p
}

#[test]
fn packages_hold_no_keys_and_no_secret_config_readable_by_others() {
    require_root();
    let fs_prefix = std::env::var("FREESWITCH_PREFIX").unwrap_or_else(|_| "/opt/freeswitch".into());
    assert!(
        Path::new(&fs_prefix)
            .join("lib/pkgconfig/freeswitch.pc")
            .is_file(),
        "no FreeSWITCH in {fs_prefix}: run scripts/setup-freeswitch (or set FREESWITCH_PREFIX)"
    );
    let mut secret_confs = 0;
    for w in ["asterisk", "agent", "freeswitch"] {
        let deb = package(w);
        let tree = unpack(&deb, &format!("scan-{w}"));
        let problems = secret_problems(&tree);
        assert!(problems.is_empty(), "{w}: {problems:#?}");
        // the config files that do take secrets are there, and 0640 (so the scan had work)
        let conffiles = std::fs::read_to_string(tree.join("DEBIAN/conffiles")).unwrap_or_default();
        for c in conffiles.lines() {
            let f = tree.join(c.trim_start_matches('/'));
            let text = std::fs::read_to_string(&f).unwrap();
            if carries_secret_setting(&text) {
                secret_confs += 1;
                assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o007, 0, "{c}");
            }
        }
        if w == "freeswitch" {
            // module and config where that prefix's FreeSWITCH looks for them
            let so = tree
                .join(fs_prefix.trim_start_matches('/'))
                .join("lib/freeswitch/mod/mod_secure_pay.so");
            let syms = ok(Command::new("nm").arg("-D").arg("--defined-only").arg(&so));
            assert!(
                syms.contains("mod_secure_pay_module_interface"),
                "{} does not export the module interface",
                so.display()
            );
            let conf = format!("{fs_prefix}/etc/freeswitch/autoload_configs/secure_pay.conf.xml");
            assert!(
                conffiles.lines().any(|c| c == conf),
                "{conf} not a conffile: {conffiles}"
            );
        }
        if w == "agent" {
            // the secrets directory is made by postinst (root, 0700), never shipped
            let mut files = Vec::new();
            walk(&tree, &mut files);
            assert!(
                !files
                    .iter()
                    .any(|f| f.starts_with(tree.join("etc/secure-pay-agent"))),
                "agent package ships files in /etc/secure-pay-agent"
            );
            let postinst = std::fs::read_to_string(tree.join("DEBIAN/postinst")).unwrap();
            assert!(postinst.contains("install -d -m 0700 -o root -g root /etc/secure-pay-agent"));
        }
        let _ = std::fs::remove_dir_all(&tree);
    }
    assert!(
        secret_confs >= 1,
        "no secret-taking config file was checked"
    );

    // control: the same scan catches a planted key, a planted certificate and a world-readable
    // config with a password, and passes the config once it is 0640
    let plant = scratch("plant");
    std::fs::create_dir_all(plant.join("etc/x")).unwrap();
    std::fs::create_dir_all(plant.join("usr/share/x")).unwrap();
    let conf = plant.join("etc/x/x.conf");
    std::fs::write(&conf, "[psp]\nurl = https://x\npassword = hunter2\n").unwrap();
    std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let body: String = (0..64).map(|i| (b'A' + (i % 26) as u8) as char).collect();
    std::fs::write(
        plant.join("usr/share/x/test-ca.txt"),
        format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"),
    )
    .unwrap();
    std::fs::write(plant.join("usr/share/x/client.key"), "not even PEM").unwrap();
    let found = secret_problems(&plant);
    for want in [
        "x.conf: takes secrets",
        "test-ca.txt: holds a PEM",
        "client.key: key/certificate",
    ] {
        assert!(
            found.iter().any(|f| f.contains(want)),
            "{want} not caught: {found:#?}"
        );
    }
    std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    assert!(!secret_problems(&plant).iter().any(|f| f.contains("x.conf")));
    let _ = std::fs::remove_dir_all(&plant);
}
