//! The only place with generated bindings (bindgen output in OUT_DIR, never committed).

#[cfg(feature = "asterisk")]
pub mod asterisk;
#[cfg(feature = "freeswitch")]
pub mod freeswitch;
