//! Per-packet cost of sealing and opening authenticated (A) and encrypted (E) test packets.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use owamp_core::crypto::{SecureMode, SessionKeys, TestPacketCrypto};

fn bench(c: &mut Criterion) {
    let keys = SessionKeys {
        aes: [0x5f; 16],
        hmac: [0x1b; 32],
    };
    let sid = [0x7f; 16];
    for (name, mode) in [
        ("A", SecureMode::Authenticated),
        ("E", SecureMode::Encrypted),
    ] {
        let crypto = TestPacketCrypto::new(mode, &sid, &keys);
        let mut packet = [0u8; 48];
        packet[3] = 1;
        c.bench_function(&format!("seal_{name}"), |b| {
            b.iter(|| {
                let mut p = packet;
                crypto.seal(black_box(&mut p)).unwrap();
                p
            })
        });
        crypto.seal(&mut packet).unwrap();
        c.bench_function(&format!("open_{name}"), |b| {
            b.iter(|| {
                let mut p = packet;
                crypto.open(black_box(&mut p)).unwrap();
                p
            })
        });
    }
    c.bench_function("new_session_E", |b| {
        b.iter(|| TestPacketCrypto::new(SecureMode::Encrypted, black_box(&sid), &keys))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
