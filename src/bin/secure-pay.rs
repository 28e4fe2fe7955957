//! `secure-pay`: offline tools. `secure-pay suppress IN.wav OUT.wav [--delay-ms N] [--mode M]`.
fn main() {
    eprintln!("secure-pay: not built yet");
    std::process::exit(2);
}
