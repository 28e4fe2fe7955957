//! 16-bit PCM mono WAV reading and writing (offline CLI, tests, benchmark).
//!
//! API CONTRACT (skeleton; the DSP work fills in the implementation).
