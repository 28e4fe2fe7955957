//! bindgen output for the Asterisk 22 headers and `c_shim/ast_shim.h` (generated in OUT_DIR by
//! `build/asterisk.rs`, never committed). Only `host::asterisk` uses it.
#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

include!(concat!(env!("OUT_DIR"), "/asterisk_bindings.rs"));
