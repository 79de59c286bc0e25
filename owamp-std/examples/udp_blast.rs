//! The raw-socket baseline of `scripts/bench-max-rate.sh`: how many datagrams of an OWAMP test
//! packet's size one paced UDP sender gets to one receiver on loopback, with no protocol at
//! all. The receiver is an owamp-os test socket sized as an OWAMP receiver of the same rate
//! sizes its own (`owamp_core::session::recv_buffer_len`), reading with kernel timestamps as
//! ours does; the sender paces its packets on a fixed grid (sleeping while more than 200 µs
//! ahead, spinning after), as fast as it can once behind.
//!
//! ```text
//! cargo run --release -p owamp-std --example udp_blast -- --rate 100000 --packets 100000
//! ```
//!
//! Prints one line, `sent N received N lost_pct X achieved_pps Y`, and exits 0 (1 on a bad
//! argument or a socket error). Loopback only; the receiver gives up two seconds after the
//! sender's last packet.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use owamp_core::session::recv_buffer_len;
use owamp_core::time::Interval;
use owamp_core::wire::{Mode, Slot, SlotKind};
use owamp_os::net::TestSocket;

struct Args {
    rate: u32,
    packets: u32,
    size: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        rate: 10_000,
        packets: 10_000,
        size: 14,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || v.parse::<u32>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--rate" => a.rate = num()?.clamp(1, 10_000_000),
            "--packets" => a.packets = num()?.clamp(1, 10_000_000),
            "--size" => a.size = (num()? as usize).clamp(1, 65_000),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn run(a: &Args) -> std::io::Result<(u32, u32, f64)> {
    let rx = TestSocket::bind("127.0.0.1:0".parse().expect("address"))?;
    let slot = Slot {
        kind: SlotKind::Fixed,
        mean: Interval::saturating_from_duration(Duration::from_secs_f64(1.0 / f64::from(a.rate))),
    };
    // The padding that makes an open-mode test packet `size` octets long.
    let padding = u32::try_from(a.size.saturating_sub(14)).unwrap_or(u32::MAX);
    rx.set_recv_buffer(recv_buffer_len(Mode::Open, &[slot], a.packets, padding))?;
    let dest: SocketAddr = rx.local_addr();
    let packets = a.packets;
    let receiver = std::thread::spawn(move || -> std::io::Result<u32> {
        let mut buf = vec![0u8; 65_536];
        let mut got = 0u32;
        while got < packets {
            match rx.recv(&mut buf, Duration::from_secs(2))? {
                Some(_) => got += 1,
                None => break,
            }
        }
        Ok(got)
    });
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    tx.connect(dest)?;
    let payload = vec![0x5au8; a.size];
    let step = Duration::from_secs_f64(1.0 / f64::from(a.rate));
    let start = Instant::now();
    let mut sent = 0u32;
    for i in 0..a.packets {
        let due = start + step * i;
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
        if tx.send(&payload).is_ok() {
            sent += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let got = receiver
        .join()
        .map_err(|_| std::io::Error::other("receiver panicked"))??;
    let achieved = if a.packets > 1 && elapsed > 0.0 {
        f64::from(a.packets - 1) / elapsed
    } else {
        0.0
    };
    Ok((sent, got, achieved))
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("udp_blast: {e}");
            std::process::exit(1);
        }
    };
    match run(&a) {
        Ok((sent, got, achieved)) => {
            let lost = 100.0 * f64::from(sent.saturating_sub(got)) / f64::from(sent.max(1));
            println!("sent {sent} received {got} lost_pct {lost:.4} achieved_pps {achieved:.0}");
        }
        Err(e) => {
            eprintln!("udp_blast: {e}");
            std::process::exit(1);
        }
    }
}
