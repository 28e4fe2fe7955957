//! Generated FreeSWITCH bindings (bindgen over the installed `switch.h` + `c_shim/fs_shim.h`,
//! written to OUT_DIR by build/freeswitch.rs; never committed). Only `host::freeswitch` uses them.
#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    unused_imports,
    improper_ctypes,
    unnecessary_transmutes,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

include!(concat!(env!("OUT_DIR"), "/freeswitch_bindings.rs"));
