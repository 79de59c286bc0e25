//! Junk datagrams flooding a receiving test socket of owampd cost the session none of its
//! packets: the socket is connected to the sender, so the kernel drops the junk.

mod common;

use common::{args, run, Daemon};

use std::net::UdpSocket;
use std::time::{Duration, Instant};

const OWPING: &str = env!("CARGO_BIN_EXE_owping");

/// The server's test ports (owping uses others, so the first UDP socket bound in this range
/// is owampd's receiving socket).
const SERVER_PORTS: (u16, u16) = (21300, 21399);

/// The UDP ports bound on the host in `range`, from /proc/net/udp.
fn bound_ports(range: (u16, u16)) -> Vec<u16> {
    let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let local = l.split_whitespace().nth(1)?;
            let port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (range.0..=range.1).contains(&port).then_some(port)
        })
        .collect()
}

/// Sends `count` junk datagrams at 127.0.0.1:`port` from another socket, spread over about
/// `span`. Returns how many the kernel took.
fn blast(port: u16, count: usize, span: Duration) -> usize {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_nonblocking(true).unwrap();
    let junk = [0x5au8; 64];
    let batches: u32 = 50;
    let t0 = Instant::now();
    let mut sent = 0;
    for b in 0..batches {
        for _ in 0..count / batches as usize {
            if s.send_to(&junk, ("127.0.0.1", port)).is_ok() {
                sent += 1;
            }
        }
        let due = span * (b + 1) / batches;
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    sent
}

/// owping sends 500 packets at 1 ms intervals to owampd while another socket sends 50,000
/// junk datagrams at owampd's receiving port: none of the 500 is lost.
#[test]
fn junk_at_the_test_port_costs_no_packets() {
    let d = Daemon::start(
        &format!("testports {}-{}\n", SERVER_PORTS.0, SERVER_PORTS.1),
        None,
        None,
    );
    let blaster = std::thread::spawn(|| {
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Some(p) = bound_ports(SERVER_PORTS).first() {
                break *p;
            }
            assert!(Instant::now() < deadline, "owampd bound no test port");
            std::thread::sleep(Duration::from_millis(2));
        };
        // owping -z 1: the session starts a second after its request (when the port was
        // bound) and lasts half a second; the junk covers that.
        std::thread::sleep(Duration::from_millis(850));
        blast(port, 50_000, Duration::from_millis(800))
    });
    let o = run(
        OWPING,
        &args(&[
            "-t",
            "-c",
            "500",
            "-i",
            "0.001",
            "-z",
            "1",
            "-L",
            "2",
            "-P",
            "21400-21499",
            &d.addr(),
        ]),
        "",
        Duration::from_secs(60),
    );
    let sent = blaster.join().unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let summary = o
        .stdout
        .lines()
        .find(|l| l.contains(" sent, "))
        .unwrap_or_default()
        .to_string();
    eprintln!("junk sent: {sent}; {summary}");
    assert!(sent > 40_000, "{sent}");
    assert!(
        summary.starts_with("500 sent, 0 lost"),
        "{summary}\n{}",
        o.stdout
    );
}
