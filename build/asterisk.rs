//! Asterisk part of the build script: bindgen over the installed Asterisk 22 headers and the C
//! shim (`c_shim/ast_shim.c`, which holds `AST_MODULE_INFO` and the macro-only APIs).
//!
//! Header root: `ASTERISK_INCLUDE_DIR` (the directory that holds `asterisk.h`), else the
//! project's own chroot (`/var/lib/securepay-asterisk-root/usr/include`, built by
//! `scripts/setup-asterisk`), else `/usr/include` of a system Asterisk.
//!
//! The root is passed with `-iquote`, never `-I`: Asterisk headers include each other with
//! quotes, so `-iquote` picks up only `asterisk.h` and `asterisk/*.h` while system headers (libc)
//! still come from the build host. `-I <chroot>/usr/include` would mix in the chroot's glibc.

use std::env;
use std::path::{Path, PathBuf};

const ENV_VAR: &str = "ASTERISK_INCLUDE_DIR";
const DEFAULT_ROOTS: &[&str] = &[
    "/var/lib/securepay-asterisk-root/usr/include",
    "/usr/include",
];
/// Must equal the installed file name without `.so`: the loader keys modules by file name.
const MODULE_NAME: &str = "res_secure_pay";

fn include_dir() -> PathBuf {
    if let Some(dir) = env::var_os(ENV_VAR) {
        let dir = PathBuf::from(dir);
        if dir.join("asterisk.h").is_file() && dir.join("asterisk/framehook.h").is_file() {
            return dir;
        }
        panic!(
            "{ENV_VAR}={} does not contain asterisk.h and asterisk/framehook.h; point {ENV_VAR} \
             at the include directory of the Asterisk 22 you deploy on (the one holding asterisk.h)",
            dir.display()
        );
    }
    for root in DEFAULT_ROOTS {
        let dir = Path::new(root);
        if dir.join("asterisk.h").is_file() && dir.join("asterisk/framehook.h").is_file() {
            return dir.to_path_buf();
        }
    }
    panic!(
        "Asterisk 22 headers not found. Set {ENV_VAR} to the directory holding asterisk.h \
         (e.g. /usr/include on a host with asterisk-dev installed), or run scripts/setup-asterisk \
         to build the project's chroot (default {}).",
        DEFAULT_ROOTS[0]
    );
}

pub fn build() {
    for var in [
        ENV_VAR,
        "LIBCLANG_PATH",
        "BINDGEN_EXTRA_CLANG_ARGS",
        "CC",
        "CFLAGS",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    for f in [
        "build/asterisk.rs",
        "c_shim/ast_shim.c",
        "c_shim/ast_shim.h",
        "c_shim/ast_wrapper.h",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    let inc = include_dir();
    println!(
        "cargo:rerun-if-changed={}",
        inc.join("asterisk/buildopts.h").display()
    );
    let module_def = format!("-DAST_MODULE=\"{MODULE_NAME}\"");
    let self_sym = format!("-DAST_MODULE_SELF_SYM=__internal_{MODULE_NAME}_self");

    cc::Build::new()
        .file("c_shim/ast_shim.c")
        .flag("-std=gnu11")
        .flag("-iquote")
        .flag(inc.to_str().expect("include dir is not UTF-8"))
        .flag("-iquote")
        .flag("c_shim")
        .define("_GNU_SOURCE", None)
        .define("_REENTRANT", None)
        .flag(&module_def)
        .flag(&self_sym)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-old-style-declaration")
        .warnings(true)
        .compile("secure_pay_ast_shim");

    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let bindings = bindgen::Builder::default()
        .header("c_shim/ast_wrapper.h")
        .clang_arg("-iquote")
        .clang_arg(inc.to_str().expect("include dir is not UTF-8"))
        .clang_arg("-iquote")
        .clang_arg("c_shim")
        .clang_arg("-D_GNU_SOURCE")
        .clang_arg("-D_REENTRANT")
        .clang_arg(&module_def)
        .clang_arg(&self_sym)
        // utils.h uses the blocks extension for its cleanup macros when the compiler is clang.
        .clang_arg("-fblocks")
        .use_core()
        .layout_tests(false)
        .wrap_unsafe_ops(true)
        .generate_comments(false)
        .default_enum_style(bindgen::EnumVariation::NewType {
            is_bitfield: false,
            is_global: false,
        })
        // our shim
        .allowlist_function("sp_ast_.*")
        .allowlist_var("SP_AST_.*")
        // channels
        .allowlist_function("ast_channel_(name|uniqueid|linkedid|get_by_name|get_by_uniqueid)")
        .allowlist_function("ast_framehook_detach")
        // applications
        .allowlist_function("ast_(register|unregister)_application2?")
        .allowlist_function("pbx_builtin_setvar_helper")
        .allowlist_function("ast_safe_sleep")
        // manager
        .allowlist_function("ast_manager_(register2|unregister)")
        .allowlist_function("astman_(get_header|send_ack|send_error)")
        .allowlist_var("EVENT_FLAG_(CALL|SYSTEM|CONFIG|REPORTING)")
        .opaque_type("ast_channel")
        .opaque_type("mansession")
        .opaque_type("message")
        .opaque_type("ast_module")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| {
            panic!(
                "bindgen over {} failed: {e}. Needs libclang (Debian: libclang-dev) and the \
                 Asterisk 22 headers ({ENV_VAR}).",
                inc.display()
            )
        });
    bindings
        .write_to_file(out.join("asterisk_bindings.rs"))
        .expect("write asterisk_bindings.rs");
    host_symbol_stubs(&out, &bindings.to_string());
}

/// Link stubs for this crate's OWN executables (bins, tests, benches) only.
///
/// The Asterisk API lives in the `asterisk` executable and resolves when it dlopens the module;
/// there is no libasterisk to link against. The crate's executables link the same rlib (they
/// never call the adapter), but rustc keeps the adapter's `#[no_mangle]` entry points alive,
/// which pulls in references to Asterisk symbols. Weak stub definitions (abort if ever called)
/// satisfy those links. They are never linked into the cdylib, so the module still takes every
/// `ast_*` symbol from Asterisk (a typo still fails at `module load`).
fn host_symbol_stubs(out: &Path, bindings: &str) {
    let is_host = |n: &str| {
        let n = n.trim_start_matches('_');
        ["ast_", "astman_", "ao2_", "pbx_"]
            .iter()
            .any(|p| n.starts_with(p))
    };
    let mut names = std::collections::BTreeSet::new();
    let archive = out.join("libsecure_pay_ast_shim.a");
    let nm = std::process::Command::new(env::var("NM").unwrap_or_else(|_| "nm".into()))
        .arg("-u")
        .arg(&archive)
        .output()
        .unwrap_or_else(|e| panic!("running nm on {}: {e} (binutils needed)", archive.display()));
    for line in String::from_utf8_lossy(&nm.stdout).lines() {
        if let Some(name) = line.split_whitespace().last() {
            if is_host(name) {
                names.insert(name.to_string());
            }
        }
    }
    // functions Rust calls directly through the bindings
    for part in bindings.split("pub fn ").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if is_host(&name) {
            names.insert(name);
        }
    }
    const DATA: &[&str] = &["ast_null_frame", "ast_format_ulaw", "ast_format_alaw"];
    let mut c = String::from(
        "/* generated by build/asterisk.rs: weak stubs for this crate's executables only */\n\
         #include <stdlib.h>\n",
    );
    for n in &names {
        if DATA.contains(&n.as_str()) {
            c.push_str(&format!(
                "__attribute__((weak, aligned(16))) char {n}[512];\n"
            ));
        } else if n == "ast_module_register" || n == "ast_module_unregister" {
            // called by the shim's AST_MODULE_INFO constructor/destructor in any executable
            // that links the shim object: a no-op outside Asterisk
            c.push_str(&format!("__attribute__((weak)) void {n}(void) {{ }}\n"));
        } else {
            c.push_str(&format!(
                "__attribute__((weak)) void {n}(void) {{ abort(); }}\n"
            ));
        }
    }
    let src = out.join("ast_host_stubs.c");
    std::fs::write(&src, c).expect("write ast_host_stubs.c");
    let objs = cc::Build::new()
        .file(&src)
        .cargo_metadata(false)
        .warnings(false)
        .compile_intermediates();
    for o in objs {
        for kind in ["bins", "tests", "benches"] {
            println!("cargo:rustc-link-arg-{kind}={}", o.display());
        }
    }
}
