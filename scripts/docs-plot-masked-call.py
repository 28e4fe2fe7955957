#!/usr/bin/env python3
"""Plots a real masker run for docs/dsp.md and the README (called by scripts/docs-pictures).

Usage: docs-plot-masked-call.py IN.wav OUT.wav DIGITS.jsonl DELAY_MS JUDGE_IN JUDGE_OUT PNG

IN.wav is what the customer sent, OUT.wav what `secure-pay suppress` wrote (DELAY_MS longer: the
look-ahead, shifted back here so both share IN's timeline), DIGITS.jsonl its stdout (one object
per captured key, times in IN's timeline), JUDGE_IN/JUDGE_OUT what multimon-ng decoded from each.
Nothing here decides what was masked: the plot only shows the two files and the run's output.
"""
import json
import sys
import wave

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def read_wav(path):
    with wave.open(path, "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            sys.exit(f"{path}: expected 16-bit mono")
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    return rate, x


def main():
    if len(sys.argv) != 8:
        sys.exit(__doc__)
    in_wav, out_wav, digits_path, delay_ms, judge_in, judge_out, png = sys.argv[1:]
    rate, x = read_wav(in_wav)
    rate_out, y = read_wav(out_wav)
    if rate_out != rate:
        sys.exit("rates differ")
    shift = int(round(float(delay_ms) * rate / 1000.0))
    y = y[shift: shift + len(x)]  # undo the look-ahead delay: same timeline as the input
    digits = [json.loads(l) for l in open(digits_path) if l.strip()]
    if not digits:
        sys.exit("the run captured no digit: nothing to plot")
    t = np.arange(len(x)) / rate

    fig, axes = plt.subplots(4, 1, figsize=(9, 6.2), sharex=True,
                             gridspec_kw={"height_ratios": [1, 1.4, 1, 1.4]})
    full = 32768.0
    titles = [
        "customer → PBX (input): multimon-ng decodes "
        + (f"\"{judge_in}\"" if judge_in else "nothing"),
        None,
        "PBX → agent and recordings (masked output): multimon-ng decodes "
        + (f"\"{judge_out}\"" if judge_out else "nothing"),
        None,
    ]
    for row, sig in ((0, x), (2, y)):
        ax = axes[row]
        ax.plot(t, sig / full, lw=0.4, color="#1f4e79")
        ax.set_ylim(-1, 1)
        ax.set_ylabel("level")
        ax.set_title(titles[row], fontsize=9, loc="left")
        spec = axes[row + 1]
        with np.errstate(divide="ignore"):  # digital silence: log of 0 is drawn as the floor
            spec.specgram(sig, NFFT=256, Fs=rate, noverlap=192, cmap="magma",
                          vmin=-40, vmax=60)
        spec.set_ylim(0, 2000)
        spec.set_ylabel("Hz")
        for f in (697, 770, 852, 941, 1209, 1336, 1477, 1633):
            spec.axhline(f, color="white", lw=0.3, alpha=0.35)
    for d in digits:
        a, b = d["start_ms"] / 1000.0, d["end_ms"] / 1000.0
        for ax in axes:
            ax.axvspan(a, b, color="#ffb000", alpha=0.18, lw=0)
        axes[0].text((a + b) / 2, 0.82, d["digit"], ha="center", va="center", fontsize=8,
                     color="#7a4f00")
    axes[-1].set_xlabel(
        "seconds (input timeline; shaded: the keys secure_pay captured, times from its own output)")
    fig.suptitle(f"secure-pay suppress, {rate} Hz, look-ahead {delay_ms} ms, mode silence: "
                 f"{len(digits)} keys captured, tones removed", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=80)


if __name__ == "__main__":
    main()
