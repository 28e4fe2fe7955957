//! Build script. With no host feature it does nothing (no libclang needed for `cargo test`).
//! With `asterisk` or `freeswitch` it finds the host headers, runs bindgen and compiles c_shim/
//! (see build/asterisk.rs and build/freeswitch.rs).

#[cfg(feature = "asterisk")]
#[path = "build/asterisk.rs"]
mod asterisk;
#[cfg(feature = "freeswitch")]
#[path = "build/freeswitch.rs"]
mod freeswitch;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DOCS_RS");
    let docs_rs = std::env::var_os("DOCS_RS").is_some();
    #[cfg(feature = "asterisk")]
    if !docs_rs {
        asterisk::build();
    }
    #[cfg(feature = "freeswitch")]
    if !docs_rs {
        freeswitch::build();
    }
    let _ = docs_rs;
}
