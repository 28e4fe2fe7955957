//! Fuzz/property harness (filled in below).
