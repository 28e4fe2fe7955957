//! FreeSWITCH adapter build: find the installed headers, run bindgen over `switch.h` (+ our shim
//! header) into OUT_DIR, compile `c_shim/fs_shim.c` with `cc`.
//!
//! Header lookup order (first hit wins):
//! 1. `FREESWITCH_INCLUDE_DIR` (the directory holding `switch.h`),
//! 2. `FREESWITCH_PREFIX` (`$FREESWITCH_PREFIX/include/freeswitch`),
//! 3. `pkg-config freeswitch` (`--variable=includedir`),
//! 4. conventional install prefixes (`/usr/local/freeswitch`, `/opt/freeswitch`, `/usr`).
//!
//! Nothing generated is ever written into the source tree.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Found {
    include: PathBuf,
    libdir: Option<PathBuf>,
    how: String,
}

fn pkg_config_var(var: &str) -> Option<PathBuf> {
    let out = Command::new("pkg-config")
        .args([&format!("--variable={var}"), "freeswitch"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| PathBuf::from(s))
}

fn from_prefix(prefix: &Path, how: String) -> Option<Found> {
    let include = prefix.join("include/freeswitch");
    include.join("switch.h").is_file().then(|| Found {
        include,
        libdir: Some(prefix.join("lib")).filter(|l| l.is_dir()),
        how,
    })
}

fn find() -> Found {
    if let Some(dir) = env::var_os("FREESWITCH_INCLUDE_DIR") {
        let include = PathBuf::from(dir);
        if include.join("switch.h").is_file() {
            let libdir = include
                .parent()
                .and_then(Path::parent)
                .map(|p| p.join("lib"))
                .filter(|l| l.is_dir());
            return Found {
                include,
                libdir,
                how: "FREESWITCH_INCLUDE_DIR".into(),
            };
        }
        panic!(
            "FREESWITCH_INCLUDE_DIR={} has no switch.h (it must be the directory holding switch.h)",
            include.display()
        );
    }
    if let Some(prefix) = env::var_os("FREESWITCH_PREFIX") {
        let prefix = PathBuf::from(prefix);
        return from_prefix(&prefix, format!("FREESWITCH_PREFIX={}", prefix.display()))
            .unwrap_or_else(|| {
                panic!(
                    "FREESWITCH_PREFIX={} has no include/freeswitch/switch.h; point it at the \
                     FreeSWITCH install prefix (the one holding bin/freeswitch)",
                    prefix.display()
                )
            });
    }
    if let Some(include) = pkg_config_var("includedir") {
        if include.join("switch.h").is_file() {
            return Found {
                include,
                libdir: pkg_config_var("libdir"),
                how: "pkg-config".into(),
            };
        }
    }
    for p in ["/usr/local/freeswitch", "/opt/freeswitch", "/usr"] {
        if let Some(f) = from_prefix(Path::new(p), format!("default prefix {p}")) {
            return f;
        }
    }
    panic!(
        "\n\nFreeSWITCH headers not found (feature `freeswitch`).\n\
         Set FREESWITCH_PREFIX to the FreeSWITCH install prefix (e.g. /opt/freeswitch, which \
         holds include/freeswitch/switch.h), or FREESWITCH_INCLUDE_DIR to the directory holding \
         switch.h, or make `pkg-config freeswitch` work (PKG_CONFIG_PATH=<prefix>/lib/pkgconfig).\n\
         Tried: FREESWITCH_INCLUDE_DIR, FREESWITCH_PREFIX, pkg-config freeswitch, \
         /usr/local/freeswitch, /opt/freeswitch, /usr.\n"
    );
}

pub fn build() {
    for v in [
        "FREESWITCH_PREFIX",
        "FREESWITCH_INCLUDE_DIR",
        "PKG_CONFIG_PATH",
        "LIBCLANG_PATH",
        "BINDGEN_EXTRA_CLANG_ARGS",
    ] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    for f in [
        "c_shim/fs_shim.c",
        "c_shim/fs_shim.h",
        "build/freeswitch.rs",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }

    let found = find();
    let _ = &found.how;
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    let bindings = bindgen::Builder::default()
        .header("c_shim/fs_shim.h")
        .clang_arg(format!("-I{}", found.include.display()))
        .allowlist_function("switch_.*|sp_fs_.*")
        .allowlist_type("switch_.*")
        .allowlist_var("SWITCH_.*|SMBF_.*|SAF_.*|SMODF_.*|SWITCH_API_VERSION")
        .prepend_enum_name(false)
        .layout_tests(false)
        .derive_debug(false)
        .derive_default(true)
        .generate_comments(false)
        .wrap_unsafe_ops(true)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| {
            panic!(
                "bindgen over {}/switch.h failed: {e}",
                found.include.display()
            )
        });
    bindings
        .write_to_file(out.join("freeswitch_bindings.rs"))
        .expect("write bindings to OUT_DIR");

    cc::Build::new()
        .file("c_shim/fs_shim.c")
        .include(&found.include)
        .include("c_shim")
        .warnings(true)
        .flag_if_supported("-Wno-unused-parameter")
        .compile("secure_pay_fs_shim");

    // Symbols resolve from the freeswitch process when the module is dlopen'ed; linking
    // libfreeswitch as well catches typos at link time and lets test/bench binaries link.
    if let Some(libdir) = found.libdir {
        if libdir.join("libfreeswitch.so").exists() {
            println!("cargo:rustc-link-search=native={}", libdir.display());
            println!("cargo:rustc-link-lib=dylib=freeswitch");
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", libdir.display());
        }
    }
}
