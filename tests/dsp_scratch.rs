use secure_pay::core::audio::SampleRate;
use secure_pay::core::suppress::{Masker, MaskerConfig};
use secure_pay::gen::*;

fn measure(name: &str, rate: u32, s: &[i16]) {
    let mut m = Masker::new(SampleRate::from_hz(rate).unwrap(), &MaskerConfig { lookahead_ms: 0, ..Default::default() }).unwrap();
    let mut o = s.to_vec();
    let mut k = 0;
    m.process(&mut o, &mut |_| k += 1);
    m.flush(&mut |_| k += 1);
    let masked = o.iter().zip(s).filter(|(a, b)| a != b).count();
    println!("{name} {rate}: altered {:.3} %, {k} digits", 100.0 * masked as f64 / s.len() as f64);
}

#[test]
fn scratch() {
    for rate in [8000u32, 16000] {
        let mut all = vec![];
        for seed in 0..20u64 {
            all.extend(speech_like(rate, rate as usize * 5, -18.0, &mut Rng::new(seed)));
        }
        measure("speech_like", rate, &all);
    }
    for f in std::fs::read_dir("/tmp/dsp").unwrap() {
        let p = f.unwrap().path();
        let n = p.file_name().unwrap().to_string_lossy().to_string();
        if n.starts_with("sp8_") || n.starts_with("sp48_") {
            let w = secure_pay::wav::read_file(&p).unwrap();
            measure(&n, w.sample_rate, &w.samples);
        }
    }
}
