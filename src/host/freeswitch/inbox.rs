//! The per-channel digit inbox between the media/DTMF threads and the dispatcher.
//!
//! A key press lives in exactly one place while it waits: one slot of a fixed slab of
//! `AtomicU64`s owned by the channel. The bounded queue that keeps the arrival order carries
//! only slot *indices* (0..[`SLOTS`]), never a digit, so the queue's internal buffer (whose
//! slots are not cleared when an element is taken) holds nothing about the card. Taking a digit
//! swaps its slot back to 0, and dropping the inbox wipes every slot.
//!
//! Producers (media thread, recv_dtmf hook on a media or sofia thread) never block and never
//! allocate: a compare-and-swap into the slot and a `try_send` of one byte into the
//! preallocated queue. If all slots are full the digit is refused (the caller reports an
//! overflow error event).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::core::capture::{DigitSource, PressTime};
use crate::core::digit::Digit;

/// Digits that can wait at once (a full card is ~25 keys).
pub const SLOTS: usize = 64;

const VALID: u64 = 1 << 63;
const TIME_MASK: u64 = (1 << 48) - 1;

fn src_code(s: DigitSource) -> u64 {
    match s {
        DigitSource::InBand => 1,
        DigitSource::Rfc4733 => 2,
        DigitSource::SipInfo => 3,
        DigitSource::HostFrame => 4,
    }
}

fn src_from(c: u64) -> DigitSource {
    match c {
        1 => DigitSource::InBand,
        2 => DigitSource::Rfc4733,
        3 => DigitSource::SipInfo,
        _ => DigitSource::HostFrame,
    }
}

pub struct Inbox {
    slots: [AtomicU64; SLOTS],
    /// When each slot's press started and ended (timing only, no digit: for duplicate
    /// suppression). Written by the producer that claimed the slot before it sends the index.
    starts: [AtomicU64; SLOTS],
    ends: [AtomicU64; SLOTS],
    next: AtomicUsize,
    order_tx: Sender<u8>,
    order_rx: Receiver<u8>,
}

impl Default for Inbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Inbox {
    pub fn new() -> Self {
        let (order_tx, order_rx) = bounded(SLOTS);
        Inbox {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            starts: std::array::from_fn(|_| AtomicU64::new(0)),
            ends: std::array::from_fn(|_| AtomicU64::new(0)),
            next: AtomicUsize::new(0),
            order_tx,
            order_rx,
        }
    }

    /// Queues a key press; false if the inbox is full (the digit is dropped, never forwarded).
    pub fn push(&self, d: Digit, src: DigitSource, t_ms: u64, time: PressTime) -> bool {
        let packed =
            VALID | (src_code(src) << 56) | ((d.as_char() as u8 as u64) << 48) | (t_ms & TIME_MASK);
        let i = self.next.fetch_add(1, Ordering::Relaxed) % SLOTS;
        if self.slots[i]
            .compare_exchange(0, packed, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false; // SLOTS digits not yet taken
        }
        self.starts[i].store(time.start_ms, Ordering::Relaxed);
        self.ends[i].store(time.end_ms, Ordering::Relaxed);
        if self.order_tx.try_send(i as u8).is_err() {
            // Cannot happen (one index per occupied slot), but never leave the digit behind.
            self.slots[i].store(0, Ordering::Release);
            return false;
        }
        true
    }

    /// Takes the oldest key press, wiping its slot.
    pub fn pop(&self) -> Option<(Digit, DigitSource, u64, PressTime)> {
        loop {
            let i = self.order_rx.try_recv().ok()? as usize;
            // The index was sent after the times were stored (the channel orders them).
            let time = PressTime {
                start_ms: self.starts.get(i)?.load(Ordering::Relaxed),
                end_ms: self.ends.get(i)?.load(Ordering::Relaxed),
            };
            let v = self.slots.get(i)?.swap(0, Ordering::AcqRel);
            if v & VALID == 0 {
                continue;
            }
            let d = Digit::from_char(((v >> 48) & 0xff) as u8 as char);
            if let Some(d) = d {
                return Some((d, src_from((v >> 56) & 0x7f), v & TIME_MASK, time));
            }
        }
    }

    /// Drops everything still waiting and zeroes every slot.
    pub fn wipe(&self) {
        while self.order_rx.try_recv().is_ok() {}
        for s in &self.slots {
            s.store(0, Ordering::Release);
        }
    }

    /// The raw slab (tests: what a memory dump would see).
    #[cfg(test)]
    fn raw(&self) -> Vec<u64> {
        self.slots
            .iter()
            .map(|s| s.load(Ordering::Acquire))
            .collect()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.wipe();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digit {
        Digit::from_char(c).unwrap()
    }

    fn pt(t: u64) -> PressTime {
        PressTime::ended(t, 0)
    }

    #[test]
    fn order_and_wipe_on_take() {
        let ib = Inbox::new();
        let card = "4111111111111111";
        for (n, c) in card.chars().enumerate() {
            assert!(ib.push(d(c), DigitSource::Rfc4733, n as u64, pt(n as u64)));
        }
        // While waiting, the digits are in the slab (control: the scan below can see them).
        let waiting = ib.raw().iter().filter(|&&v| v != 0).count();
        assert_eq!(waiting, card.len());
        let mut got = String::new();
        while let Some((k, src, t, time)) = ib.pop() {
            assert_eq!(time.end_ms, t);
            assert!(matches!(src, DigitSource::Rfc4733));
            assert_eq!(t, got.len() as u64);
            got.push(k.as_char());
        }
        assert_eq!(got, card);
        assert!(ib.raw().iter().all(|&v| v == 0), "slab wiped on take");
    }

    #[test]
    fn queue_carries_indices_only() {
        let ib = Inbox::new();
        for c in "98765".chars() {
            assert!(ib.push(d(c), DigitSource::InBand, 7, pt(7)));
        }
        // Read the order queue directly: only slot numbers, and the slab holds the digits.
        let mut idx = Vec::new();
        while let Ok(i) = ib.order_rx.try_recv() {
            idx.push(i);
        }
        assert_eq!(idx, vec![0, 1, 2, 3, 4]);
        let raw = ib.raw();
        let digits: String = raw[..5]
            .iter()
            .map(|v| ((v >> 48) & 0xff) as u8 as char)
            .collect();
        assert_eq!(digits, "98765");
        ib.wipe();
        assert!(ib.raw().iter().all(|&v| v == 0));
    }

    #[test]
    fn full_inbox_refuses_and_keeps_order() {
        let ib = Inbox::new();
        for n in 0..SLOTS {
            assert!(ib.push(d('5'), DigitSource::SipInfo, n as u64, pt(n as u64)));
        }
        assert!(
            !ib.push(d('7'), DigitSource::SipInfo, 999, pt(999)),
            "65th refused"
        );
        for n in 0..SLOTS {
            let (k, _, t, _) = ib.pop().expect("queued");
            assert_eq!((k.as_char(), t), ('5', n as u64));
        }
        assert!(ib.pop().is_none());
        // Slots wrap around after being taken.
        assert!(ib.push(d('#'), DigitSource::InBand, 1, pt(1)));
        assert_eq!(ib.pop().map(|(k, _, _, _)| k.as_char()), Some('#'));
        assert!(ib.raw().iter().all(|&v| v == 0));
    }

    #[test]
    fn concurrent_producers_lose_nothing_below_capacity() {
        let ib = std::sync::Arc::new(Inbox::new());
        let hs: Vec<_> = (0..4)
            .map(|p| {
                let ib = ib.clone();
                std::thread::spawn(move || {
                    for n in 0..10u64 {
                        assert!(ib.push(d('1'), DigitSource::InBand, p * 100 + n, pt(p * 100 + n)));
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let mut n = 0;
        while ib.pop().is_some() {
            n += 1;
        }
        assert_eq!(n, 40);
        assert!(ib.raw().iter().all(|&v| v == 0));
    }
}
