//! Connection slots: a global cap and a per-client (source IP) cap on open HTTP connections,
//! live-update streams included. A slot is held for as long as its connection is open (it moves
//! with an SSE stream to the stream writer) and freed on drop.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::link::lock;

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The service holds its maximum of open connections (503).
    Full,
    /// This client (source address) holds its maximum (429).
    Client,
}

pub struct Limits {
    max_total: usize,
    max_per_client: usize,
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection's place; freed on drop.
pub struct Slot {
    lim: Arc<Limits>,
    ip: IpAddr,
}

impl Limits {
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Limits> {
        Arc::new(Limits {
            max_total,
            max_per_client,
            total: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot for a connection from `ip`, or says which cap refuses it.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let ip = client_key(ip);
        let mut g = lock(&self.per_client);
        if self.total.load(Ordering::SeqCst) >= self.max_total {
            return Err(Refused::Full);
        }
        let n = g.entry(ip).or_insert(0);
        if *n >= self.max_per_client {
            return Err(Refused::Client);
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::SeqCst);
        Ok(Slot {
            lim: Arc::clone(self),
            ip,
        })
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    /// Open connections from `ip` now.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        lock(&self.per_client)
            .get(&client_key(ip))
            .copied()
            .unwrap_or(0)
    }
}

/// What counts as one client: an IPv4 address (also IPv4-mapped IPv6), or an IPv6 /64 (one
/// host usually holds a whole /64, so per-address caps would not bind it).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::V6(std::net::Ipv6Addr::from(o))
            }
        },
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = lock(&self.lim.per_client);
        if let Some(n) = g.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                g.remove(&self.ip);
            }
        }
        self.lim.total.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Raises the soft RLIMIT_NOFILE towards `want` (never above the hard limit); returns the soft
/// limit in force.
pub fn raise_nofile(want: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `r`, a valid, exclusively borrowed rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 0;
    }
    if r.rlim_cur < want {
        let new = libc::rlimit {
            rlim_cur: want.min(r.rlim_max),
            rlim_max: r.rlim_max,
        };
        // SAFETY: setrlimit reads `new`, a valid rlimit; the soft limit stays within the hard.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            r.rlim_cur = new.rlim_cur;
        }
    }
    r.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_client_and_total_and_slots_come_back() {
        let l = Limits::new(3, 2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let s1 = l.acquire(a).unwrap();
        let _s2 = l.acquire(a).unwrap();
        assert_eq!(l.acquire(a).err(), Some(Refused::Client));
        let _s3 = l.acquire(b).unwrap();
        assert_eq!(l.acquire(b).err(), Some(Refused::Full));
        assert_eq!((l.open(), l.open_from(a)), (3, 2));
        drop(s1);
        assert_eq!((l.open(), l.open_from(a)), (2, 1));
        let _s4 = l.acquire(a).unwrap();
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client() {
        let l = Limits::new(10, 2);
        let x: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let z: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _a = l.acquire(x).unwrap();
        let _b = l.acquire(y).unwrap();
        assert_eq!(l.acquire(x).err(), Some(Refused::Client));
        assert!(l.acquire(z).is_ok());
        let m: IpAddr = "::ffff:127.0.0.9".parse().unwrap();
        let _c = l.acquire(m).unwrap();
        assert_eq!(l.open_from("127.0.0.9".parse().unwrap()), 1);
    }
}
