//! Per-packet cost of building and of receiving a test packet in each mode.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use owamp_core::crypto::{SecureMode, SessionKeys, TestPacketCrypto};
use owamp_core::session::{PacketProtection, Receiver, Schedule, Sender, SessionParams};
use owamp_core::time::Interval;
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::{SessionId, Slot, SlotKind};

const SEC: u64 = 1 << 32;
const COUNT: u32 = 100_000;
const SID: SessionId = SessionId([0x42; 16]);

fn params() -> SessionParams {
    let slot = Slot {
        kind: SlotKind::Exponential,
        mean: Interval::from_raw(SEC / 1000),
    };
    SessionParams {
        schedule: Schedule::new(SID, &[slot], COUNT).unwrap(),
        start: OwampTime::from_raw(0xeeb2_5d6f_0000_0000),
        timeout: Interval::from_raw(2 * SEC),
        padding: 0,
    }
}

fn protection(mode: Option<SecureMode>) -> PacketProtection {
    let keys = SessionKeys {
        aes: [7; 16],
        hmac: [9; 32],
    };
    match mode {
        None => PacketProtection::Open,
        Some(m) => PacketProtection::Sealed(TestPacketCrypto::new(m, &SID.0, &keys)),
    }
}

const MODES: [(&str, Option<SecureMode>); 3] = [
    ("open", None),
    ("authenticated", Some(SecureMode::Authenticated)),
    ("encrypted", Some(SecureMode::Encrypted)),
];

fn build(c: &mut Criterion) {
    let err = ErrorEstimate::from_raw(1);
    for (name, mode) in MODES {
        // Includes advancing the schedule (one exponential deviate per packet).
        c.bench_function(&format!("session_build_{name}"), |b| {
            b.iter_batched_ref(
                || {
                    let s = Sender::new(params(), protection(mode)).unwrap();
                    let buf = vec![0u8; s.packet_len()];
                    (s, buf)
                },
                |(s, buf)| {
                    for _ in 0..1000 {
                        let (_, due) = s.next_due().unwrap();
                        black_box(s.build(buf, due, err).unwrap());
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
}

fn receive(c: &mut Criterion) {
    let err = ErrorEstimate::from_raw(1);
    for (name, mode) in MODES {
        // 1000 packets, built once; each iteration feeds them to a fresh receiver.
        let mut s = Sender::new(params(), protection(mode)).unwrap();
        let mut packets = Vec::new();
        for _ in 0..1000 {
            let mut buf = vec![0u8; s.packet_len()];
            let (_, due) = s.next_due().unwrap();
            s.build(&mut buf, due, err).unwrap();
            packets.push((buf, OwampTime::from_raw(due.raw() + SEC / 10_000)));
        }
        c.bench_function(&format!("session_receive_{name}"), |b| {
            b.iter_batched_ref(
                || Receiver::new(params(), protection(mode)),
                |rx| {
                    for (p, t) in &packets {
                        black_box(rx.receive(p, *t, err, 64).unwrap());
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
}

criterion_group!(benches, build, receive);
criterion_main!(benches);
