//! The kernel-timestamp floor of a one-way delay on loopback, the baseline of
//! `scripts/bench-owd.sh`: one paced UDP sender stamps each datagram with the system clock
//! just before `send(2)`, as an OWAMP sender stamps its test packet, and one receiver reads it
//! with the kernel's receive timestamp (`SO_TIMESTAMPNS`, an owamp-os test socket, as ours
//! reads); the delay of each is receive stamp minus send stamp. No protocol, no packet
//! building, no storage: what is left is the send system call, the loopback path and the
//! wake-ups the schedule costs, which any OWAMP implementation on this host pays too.
//!
//! The sender keeps a Poisson schedule of the given mean rate (as owping's default), sleeping
//! while more than 200 µs ahead and spinning after.
//!
//! ```text
//! cargo run --release -p owamp-std --example owd_floor -- --rate 10000 --packets 20000
//! ```
//!
//! Prints one line, `received N delay_us median M p90 P p99 Q max X late_us median M p90 P
//! p99 Q max X` (the second set: how late the sender stamped each datagram after its
//! scheduled time, the same sender's baseline for an OWAMP sender's lateness), and exits 0 (1
//! on a bad argument, a socket error or nothing received). Loopback only; the receiver gives up
//! two seconds after the last datagram.

use std::net::UdpSocket;
use std::time::{Duration, Instant, SystemTime};

use owamp_os::net::TestSocket;

struct Args {
    rate: u32,
    packets: u32,
    size: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        rate: 100,
        packets: 1_000,
        size: 14,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || v.parse::<u32>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--rate" => a.rate = num()?.clamp(1, 1_000_000),
            "--packets" => a.packets = num()?.clamp(1, 1_000_000),
            "--size" => a.size = (num()? as usize).clamp(12, 65_000),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

/// A small xorshift generator: the schedule needs no cryptographic randomness, only a fixed
/// sequence so that runs are alike.
struct XorShift(u64);

impl XorShift {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // 53 random bits in (0, 1].
        ((self.0 >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
}

fn nanos_since_epoch(t: SystemTime) -> i128 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// The delays received and the sender's lateness, in ns.
fn run(a: &Args) -> std::io::Result<(Vec<i64>, Vec<i64>)> {
    let rx = TestSocket::bind("127.0.0.1:0".parse().expect("address"))?;
    // Room for a second of datagrams whatever the rate: loss is not what this measures.
    rx.set_recv_buffer((a.rate as usize).saturating_mul(2048).max(1 << 20))?;
    let dest = rx.local_addr();
    let packets = a.packets;
    let receiver = std::thread::spawn(move || -> std::io::Result<Vec<i64>> {
        let mut buf = vec![0u8; 65_536];
        let mut delays = Vec::with_capacity(packets as usize);
        while delays.len() < packets as usize {
            let Some(r) = rx.recv(&mut buf, Duration::from_secs(2))? else {
                break;
            };
            let (Some(at), Some(stamp)) = (r.kernel_time, buf.get(..16)) else {
                continue;
            };
            let sent = i128::from_be_bytes(stamp.try_into().expect("16 octets"));
            delays.push(i64::try_from(nanos_since_epoch(at) - sent).unwrap_or(i64::MAX));
        }
        Ok(delays)
    });
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    tx.connect(dest)?;
    let mut payload = vec![0u8; a.size.max(16)];
    let mean = 1.0 / f64::from(a.rate);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let start = Instant::now() + Duration::from_millis(10);
    let mut offset = 0.0f64;
    let mut late = Vec::with_capacity(a.packets as usize);
    for _ in 0..a.packets {
        offset += -mean * rng.next_f64().ln();
        let due = start + Duration::from_secs_f64(offset);
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            let ahead = due - now;
            if ahead > Duration::from_micros(200) {
                std::thread::sleep(ahead - Duration::from_micros(100));
            } else {
                std::hint::spin_loop();
            }
        }
        let stamp = nanos_since_epoch(SystemTime::now());
        late.push(i64::try_from(Instant::now().duration_since(due).as_nanos()).unwrap_or(i64::MAX));
        payload[..16].copy_from_slice(&stamp.to_be_bytes());
        // A refused send (no receiver yet) is a datagram not received: it shows in the count.
        let _ = tx.send(&payload);
    }
    let delays = receiver
        .join()
        .map_err(|_| std::io::Error::other("receiver panicked"))??;
    Ok((delays, late))
}

/// The median, p90, p99 and maximum of `v` (sorted here), in µs.
fn quantiles(v: &mut [i64]) -> String {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    format!(
        "median {:.1} p90 {:.1} p99 {:.1} max {:.1}",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    )
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("owd_floor: {e}");
            std::process::exit(1);
        }
    };
    match run(&a) {
        Ok((mut d, mut late)) if !d.is_empty() && !late.is_empty() => {
            println!(
                "received {} delay_us {} late_us {}",
                d.len(),
                quantiles(&mut d),
                quantiles(&mut late)
            );
        }
        Ok(_) => {
            eprintln!("owd_floor: nothing received");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("owd_floor: {e}");
            std::process::exit(1);
        }
    }
}
