//! Sender to receiver in memory, in all three modes, over a simulated network that loses,
//! duplicates, delays and reorders packets (seeded, so the counts are exact).

use owamp_core::crypto::{SecureMode, SessionKeys, TestPacketCrypto};
use owamp_core::session::{
    DropReason, PacketProtection, Receiver, Schedule, Sender, SessionParams, DEFAULT_MAX_WINDOW,
    TTL_UNKNOWN,
};
use owamp_core::time::Interval;
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::{SessionId, Slot, SlotKind};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SEC: u64 = 1 << 32;
const SID: SessionId = SessionId([
    0x7f, 0, 0, 1, 0xee, 0xb2, 0x5d, 0x6e, 0xf6, 0x42, 0x17, 0xd2, 0xe7, 0xf3, 0xe7, 0x51,
]);

fn keys() -> SessionKeys {
    SessionKeys {
        aes: core::array::from_fn(|i| 3 * i as u8 + 1),
        hmac: core::array::from_fn(|i| 0x55 ^ (7 * i) as u8),
    }
}

fn protection(mode: Option<SecureMode>) -> PacketProtection {
    match mode {
        None => PacketProtection::Open,
        Some(m) => PacketProtection::Sealed(TestPacketCrypto::new(m, &SID.0, &keys())),
    }
}

fn params(count: u32, padding: u32) -> SessionParams {
    let slot = Slot {
        kind: SlotKind::Exponential,
        mean: Interval::from_raw(SEC / 100), // 10 ms
    };
    SessionParams {
        schedule: Schedule::new(SID, &[slot], count).unwrap(),
        start: OwampTime::from_raw(0xeeb2_5d6f_0000_0000),
        timeout: Interval::from_raw(2 * SEC),
        padding,
    }
}

const ERR_SEND: ErrorEstimate = ErrorEstimate::from_raw(0x0001);
const ERR_RECV: ErrorEstimate = ErrorEstimate::from_raw(0x0102);

struct Arrival {
    at: u64,
    bytes: Vec<u8>,
}

/// Sends every packet at its due time; the network drops, duplicates and delays (up to
/// `max_delay`) each copy. Returns arrivals sorted by time, the lost and the duplicated seqs.
fn simulate(
    sender: &mut Sender,
    rng: &mut ChaCha8Rng,
    max_delay: u64,
) -> (Vec<Arrival>, Vec<u32>, u64) {
    let mut buf = vec![0u8; sender.packet_len()];
    let mut arrivals = Vec::new();
    let mut lost = Vec::new();
    let mut dups = 0;
    while let Some((seq, due)) = sender.next_due() {
        let len = sender.build(&mut buf, due, ERR_SEND).unwrap();
        let roll = rng.next_u32() % 100;
        let copies = match roll {
            0..=7 => 0,  // 8 % lost
            8..=12 => 2, // 5 % duplicated
            13 => 3,     // 1 % triplicated
            _ => 1,
        };
        if copies == 0 {
            lost.push(seq);
        }
        dups += copies.max(1) - 1;
        for _ in 0..copies {
            let delay = 1000 + rng.next_u64() % max_delay;
            arrivals.push(Arrival {
                at: due.raw() + delay,
                bytes: buf[..len].to_vec(),
            });
        }
    }
    arrivals.sort_by_key(|a| a.at);
    (arrivals, lost, dups)
}

fn run(mode: Option<SecureMode>, padding: u32, seed: u64) {
    let count = 500;
    let p = params(count, padding);
    let mut sender = Sender::new(p.clone(), protection(mode)).unwrap();
    let mut receiver = Receiver::new(p.clone(), protection(mode));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Delays up to 300 ms against 10 ms gaps: heavy reordering, all within the 2 s timeout.
    let (arrivals, lost, dups) = simulate(&mut sender, &mut rng, 3 * SEC / 10);
    assert!(sender.is_finished());
    assert_eq!(sender.next_seqno(), count);
    assert!(sender.skip_ranges().is_empty());

    let mut reordered = 0;
    let mut last_seq = 0;
    for a in &arrivals {
        let r = receiver
            .receive(&a.bytes, OwampTime::from_raw(a.at), ERR_RECV, 64)
            .unwrap();
        if r.seq < last_seq {
            reordered += 1;
        }
        last_seq = last_seq.max(r.seq);
    }
    assert!(reordered > 10, "the test should reorder ({reordered})");
    let end = OwampTime::from_raw(arrivals.last().unwrap().at + 3 * SEC);
    receiver.poll(end, ERR_RECV);
    assert!(receiver.is_complete());
    let stats = *receiver.stats();
    assert_eq!(stats.lost, lost.len() as u64);
    assert_eq!(stats.duplicates, dups);
    assert_eq!(stats.received, u64::from(count) - lost.len() as u64);
    assert_eq!(stats.drops.total(), 0);

    let records = receiver.finish(end, Some(count), ERR_RECV).unwrap();
    assert_eq!(records.len() as u64, u64::from(count) + dups);
    let mut lost_seen: Vec<u32> = records
        .iter()
        .filter(|r| r.is_lost())
        .map(|r| r.seq)
        .collect();
    lost_seen.sort_unstable();
    assert_eq!(lost_seen, lost);
    for r in &records {
        let due = p.schedule.send_time(p.start, r.seq).unwrap();
        assert_eq!(r.send_time, due);
        if r.is_lost() {
            assert_eq!(r.ttl, TTL_UNKNOWN);
            assert_eq!(r.send_error.raw(), 1);
        } else {
            assert_eq!(r.ttl, 64);
            assert_eq!(r.send_error, ERR_SEND);
            assert!(r.recv_time > r.send_time);
        }
        assert_eq!(r.recv_error, ERR_RECV);
    }
    // Received records are in arrival order.
    let recv_times: Vec<u64> = records
        .iter()
        .filter(|r| !r.is_lost())
        .map(|r| r.recv_time.raw())
        .collect();
    assert!(recv_times.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn open_mode_round_trip() {
    run(None, 0, 1);
    run(None, 27, 2);
}

#[test]
fn authenticated_mode_round_trip() {
    run(Some(SecureMode::Authenticated), 0, 3);
    run(Some(SecureMode::Authenticated), 100, 4);
}

#[test]
fn encrypted_mode_round_trip() {
    run(Some(SecureMode::Encrypted), 0, 5);
    run(Some(SecureMode::Encrypted), 13, 6);
}

/// Builds packet `seq` of a session with the given protection, stamped `shift` (signed,
/// 32.32 seconds) away from its due time.
fn packet_shifted(
    p: &SessionParams,
    mode: Option<SecureMode>,
    seq: u32,
    shift: i64,
    err: ErrorEstimate,
) -> Vec<u8> {
    let mut s = Sender::new(p.clone(), protection(mode)).unwrap();
    for _ in 0..seq {
        s.skip();
    }
    let (_, due) = s.next_due().unwrap();
    let mut buf = vec![0u8; s.packet_len()];
    let ts = OwampTime::from_raw(due.raw().wrapping_add_signed(shift));
    s.build(&mut buf, ts, err).unwrap();
    buf
}

/// Builds packet `seq` stamped at its due time.
fn packet(p: &SessionParams, mode: Option<SecureMode>, seq: u32) -> Vec<u8> {
    packet_shifted(p, mode, seq, 0, ERR_SEND)
}

fn at(p: &SessionParams, seq: u32, late: u64) -> OwampTime {
    OwampTime::from_raw(p.schedule.send_time(p.start, seq).unwrap().raw() + late)
}

#[test]
fn bad_packets_are_dropped_and_counted() {
    for mode in [
        None,
        Some(SecureMode::Authenticated),
        Some(SecureMode::Encrypted),
    ] {
        let p = params(10, 8);
        let mut rx = Receiver::new(p.clone(), protection(mode));
        let good = packet(&p, mode, 3);
        let t = at(&p, 3, SEC / 1000);

        // Wrong length: one octet short, one octet long, empty.
        for bad in [
            &good[..good.len() - 1],
            &[good.clone(), vec![0]].concat()[..],
            &[],
        ] {
            assert_eq!(
                rx.receive(bad, t, ERR_RECV, 255),
                Err(DropReason::WrongLength)
            );
        }
        // A flipped bit in the sequence number: bad HMAC when sealed.
        let mut flipped = good.clone();
        flipped[3] ^= 1;
        let r = rx.receive(&flipped, t, ERR_RECV, 255);
        if mode.is_some() {
            assert_eq!(r, Err(DropReason::BadHmac));
        } else {
            assert_eq!(r.unwrap().seq, 2);
        }
        // Sequence number beyond the packet count (built for a longer session).
        let longer = params(100, 8);
        let beyond = packet(&longer, mode, 50);
        assert_eq!(
            rx.receive(&beyond, at(&longer, 50, 0), ERR_RECV, 255),
            Err(DropReason::SeqOutOfRange)
        );
        // Packets from another session (other SID, so other keys) fail the HMAC.
        if let Some(m) = mode {
            let other = TestPacketCrypto::new(m, &[9; 16], &keys());
            let mut tx = Sender::new(p.clone(), PacketProtection::Sealed(other)).unwrap();
            let mut buf = vec![0u8; tx.packet_len()];
            let (_, due) = tx.next_due().unwrap();
            tx.build(&mut buf, due, ERR_SEND).unwrap();
            assert_eq!(rx.receive(&buf, t, ERR_RECV, 255), Err(DropReason::BadHmac));
        }
        // The good packet is still accepted, once; a second copy is a duplicate.
        let a = rx.receive(&good, t, ERR_RECV, 255).unwrap();
        assert_eq!((a.seq, a.duplicate), (3, false));
        assert!(rx.receive(&good, t, ERR_RECV, 255).unwrap().duplicate);

        let d = rx.stats().drops;
        assert_eq!(d.wrong_length, 3);
        assert_eq!(d.seq_out_of_range, 1);
        let bad_hmac = if mode.is_some() { 2 } else { 0 };
        assert_eq!(d.bad_hmac, bad_hmac);
        assert_eq!(d.total(), 4 + bad_hmac);
        assert_eq!(rx.stats().duplicates, 1);
    }
}

#[test]
fn timing_checks_drop_late_and_off_schedule_packets() {
    let mode = Some(SecureMode::Encrypted);
    let p = params(50, 0);
    let mut rx = Receiver::new(p.clone(), protection(mode));

    let sec = SEC as i64;
    // Packet 5 stamped 2.5 s before its due time (and received 0.1 s later): off schedule
    // (timeout 2 s).
    let early5 = packet_shifted(&p, mode, 5, -5 * sec / 2, ERR_SEND);
    assert_eq!(
        rx.receive(
            &early5,
            OwampTime::from_raw(at(&p, 5, 0).raw() - 24 * SEC / 10),
            ERR_RECV,
            255
        ),
        Err(DropReason::OffSchedule)
    );
    // Packet 6 stamped 1.5 s early and received 1 s after its due time: the clocks disagree
    // by more than the timeout.
    let early6 = packet_shifted(&p, mode, 6, -3 * sec / 2, ERR_SEND);
    assert_eq!(
        rx.receive(&early6, at(&p, 6, SEC), ERR_RECV, 255),
        Err(DropReason::ClockMismatch)
    );
    // Zero multiplier in the error estimate.
    let zero_mult = packet_shifted(&p, mode, 7, 0, ErrorEstimate::from_raw(0x0100));
    assert_eq!(
        rx.receive(&zero_mult, at(&p, 7, 1000), ERR_RECV, 255),
        Err(DropReason::InvalidErrorEstimate)
    );

    // Packet 1 arrives well in time; packet 0 has long been declared lost when it arrives.
    let good0 = packet(&p, mode, 0);
    let good1 = packet(&p, mode, 1);
    rx.receive(&good1, at(&p, 1, 1000), ERR_RECV, 255).unwrap();
    rx.poll(at(&p, 0, 2 * SEC + 1), ERR_RECV);
    assert_eq!(rx.stats().lost, 1);
    assert_eq!(
        rx.receive(&good0, at(&p, 0, 2 * SEC + 2), ERR_RECV, 255),
        Err(DropReason::TooLate)
    );
    let lost0 = rx.records().iter().find(|r| r.seq == 0).unwrap();
    assert!(lost0.is_lost());

    let d = rx.stats().drops;
    assert_eq!(
        (
            d.off_schedule,
            d.clock_mismatch,
            d.invalid_error_estimate,
            d.too_late
        ),
        (1, 1, 1, 1)
    );
}

#[test]
fn finish_applies_next_seqno_and_stop_time() {
    let p = params(40, 0);
    let mut rx = Receiver::new(p.clone(), PacketProtection::Open);
    for seq in [0, 2, 3] {
        let b = packet(&p, None, seq);
        rx.receive(&b, at(&p, seq, 1000), ERR_RECV, 9).unwrap();
    }
    // The sender stopped after packet 9: 0..10 are accounted for, 1 and 4..10 lost.
    let stop = at(&p, 39, 10 * SEC);
    let recs = rx.clone().finish(stop, Some(10), ERR_RECV).unwrap();
    assert_eq!(recs.len(), 10);
    let order: Vec<u32> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(order, vec![0, 2, 3, 1, 4, 5, 6, 7, 8, 9]);
    assert_eq!(recs.iter().filter(|r| r.is_lost()).count(), 7);

    // A received packet beyond Next Seqno invalidates the session.
    assert!(rx.clone().finish(stop, Some(3), ERR_RECV).is_err());
    assert!(rx.clone().finish(stop, Some(41), ERR_RECV).is_err());

    // Without a Next Seqno, lost records of packets scheduled after stop - timeout are
    // removed (they may not have been sent yet); a packet received is always kept.
    let early_stop = at(&p, 2, 2 * SEC);
    let recs = rx.finish(early_stop, None, ERR_RECV).unwrap();
    let order: Vec<u32> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(order, vec![0, 2, 3, 1], "{recs:?}");
}

/// RFC 4656 3.8: a packet the sender counts in Next Seqno is kept or counted as lost, never
/// dropped from both. Here the last packet leaves 20 ms late (well inside the 2 s timeout)
/// and the sender's Stop-Sessions arrives right after it.
#[test]
fn late_last_packet_is_kept_when_stop_follows_at_once() {
    let p = params(100, 0);
    let mut tx = Sender::new(p.clone(), PacketProtection::Open).unwrap();
    let mut rx = Receiver::new(p.clone(), PacketProtection::Open);
    let mut buf = [0u8; 14];
    let mut last_arrival = OwampTime::from_raw(0);
    while let Some((seq, due)) = tx.next_due() {
        let late = if seq == 99 { SEC / 50 } else { 0 };
        let sent = OwampTime::from_raw(due.raw() + late);
        assert!(!tx.is_too_late(sent));
        let n = tx.build(&mut buf, sent, ERR_SEND).unwrap();
        last_arrival = OwampTime::from_raw(sent.raw() + SEC / 1000);
        rx.receive(&buf[..n], last_arrival, ERR_RECV, 64).unwrap();
    }
    let stop = OwampTime::from_raw(last_arrival.raw() + SEC / 1000);
    let recs = rx.finish(stop, Some(tx.next_seqno()), ERR_RECV).unwrap();
    assert_eq!(recs.len(), 100);
    assert_eq!(recs.iter().filter(|r| r.is_lost()).count(), 0);
    assert_eq!(recs.last().map(|r| r.seq), Some(99));
}

fn ranges(tx: &Sender) -> Vec<(u32, u32)> {
    tx.skip_ranges().iter().map(|r| (r.first, r.last)).collect()
}

#[test]
fn sender_skips_and_reports_ranges() {
    let p = params(10, 0);
    let mut tx = Sender::new(p.clone(), PacketProtection::Open).unwrap();
    let mut buf = [0u8; 14];
    let (_, due0) = tx.next_due().unwrap();
    assert!(!tx.is_too_late(due0));
    assert!(tx.is_too_late(OwampTime::from_raw(due0.raw() + 2 * SEC + 1)));
    tx.build(&mut buf, due0, ERR_SEND).unwrap();
    assert_eq!(tx.skip(), Some(1));
    assert_eq!(tx.skip(), Some(2));
    tx.build(&mut buf, due0, ERR_SEND).unwrap();
    assert_eq!(tx.skip(), Some(4));
    assert_eq!(tx.next_seqno(), 5);
    assert_eq!(ranges(&tx), vec![(1, 2), (4, 4)]);
    while tx.skip().is_some() {}
    assert_eq!(ranges(&tx), vec![(1, 2), (4, 9)]);
    assert_eq!(tx.next_seqno(), 10);
    assert!(tx.build(&mut buf, due0, ERR_SEND).is_err());
}

#[test]
fn duplicate_records_are_capped() {
    let p = params(5, 0);
    let mut rx = Receiver::new(p.clone(), PacketProtection::Open).with_max_duplicates(2);
    let b = packet(&p, None, 1);
    for _ in 0..6 {
        rx.receive(&b, at(&p, 1, 1000), ERR_RECV, 1).unwrap();
    }
    assert_eq!(rx.stats().duplicates, 5);
    assert_eq!(rx.stats().duplicates_unrecorded, 3);
    assert_eq!(rx.records().len(), 3);
}

#[test]
fn far_sequence_numbers_do_not_grow_state() {
    // A session of 2^32 - 1 packets every 10 ms: a datagram claiming the last sequence number
    // now is off schedule, and is found so after generating only the packets due within the
    // timeout, not billions of them.
    let slot = Slot {
        kind: SlotKind::Exponential,
        mean: Interval::from_raw(SEC / 100),
    };
    let p = SessionParams {
        schedule: Schedule::new(SID, &[slot], u32::MAX).unwrap(),
        start: OwampTime::from_raw(0xeeb2_5d6f_0000_0000),
        timeout: Interval::from_raw(2 * SEC),
        padding: 0,
    };
    let mut rx = Receiver::new(p.clone(), PacketProtection::Open);
    let now = OwampTime::from_raw(p.start.raw() + SEC);
    let mut forged = [0u8; 14];
    forged[0..4].copy_from_slice(&(u32::MAX - 1).to_be_bytes());
    forged[4..12].copy_from_slice(&now.raw().to_be_bytes());
    forged[12..14].copy_from_slice(&1u16.to_be_bytes());
    let t = std::time::Instant::now();
    for _ in 0..1000 {
        assert_eq!(
            rx.receive(&forged, now, ERR_RECV, 255),
            Err(DropReason::OffSchedule)
        );
    }
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    // Beyond the count: dropped before any schedule work.
    forged[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        rx.receive(&forged, now, ERR_RECV, 255),
        Err(DropReason::SeqOutOfRange)
    );
}

#[test]
fn a_packet_far_ahead_cannot_make_the_receiver_track_the_whole_session() {
    // Zero gaps: every packet of the session is due at the start, so every sequence number is
    // on schedule for a packet stamped then. Schedule and timeout come from the peer.
    let start = OwampTime::from_raw(0xeeb2_5d6f_0000_0000);
    let slot = Slot {
        kind: SlotKind::Fixed,
        mean: Interval::from_raw(0),
    };
    let p = SessionParams {
        schedule: Schedule::new(SID, &[slot], u32::MAX).unwrap(),
        start,
        timeout: Interval::from_raw(2 * SEC),
        padding: 0,
    };
    let open = |seq: u32| {
        let mut b = Vec::with_capacity(14);
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&start.raw().to_be_bytes());
        b.extend_from_slice(&ERR_SEND.raw().to_be_bytes());
        b
    };

    let mut rx = Receiver::new(p.clone(), PacketProtection::Open).with_max_window(10);
    assert!(rx.receive(&open(9), start, ERR_RECV, 64).is_ok());
    assert_eq!(
        rx.receive(&open(10), start, ERR_RECV, 64),
        Err(DropReason::WindowFull)
    );

    // The default bound: one packet numbered near the end of a 2^32-packet session is
    // dropped instead of making the receiver hold 2^32 pending packets.
    let mut rx = Receiver::new(p, PacketProtection::Open);
    assert_eq!(
        rx.receive(&open(u32::MAX - 1), start, ERR_RECV, 64),
        Err(DropReason::WindowFull)
    );
    let last = u32::try_from(DEFAULT_MAX_WINDOW).unwrap() - 1;
    assert!(rx.receive(&open(last), start, ERR_RECV, 64).is_ok());
    assert_eq!(
        rx.receive(&open(last + 1), start, ERR_RECV, 64),
        Err(DropReason::WindowFull)
    );
    assert_eq!(rx.stats().drops.window_full, 2);
    assert_eq!(rx.stats().received, 1);
}

/// Records taken as they come (to be written out at once) and the stream's end make the
/// same records as a receiver that kept them all: here a sender stalls after packet 49, so
/// packets 50.. are declared lost (and handed out) before its Stop-Sessions says Next-Seqno
/// 50: the end prunes them from what was handed out (RFC 4656 3.8).
#[test]
fn streamed_records_match_finish_even_when_pruned() {
    use owamp_core::io::{Finished, SessionEnd};
    let p = params(200, 0);
    let mut tx = Sender::new(p.clone(), PacketProtection::Open).unwrap();
    let mut whole = Receiver::new(p.clone(), PacketProtection::Open);
    let mut streamed = Receiver::new(p.clone(), PacketProtection::Open);
    let mut taken = Vec::new();
    let mut buf = [0u8; 14];
    for _ in 0..50 {
        let (seq, due) = tx.next_due().unwrap();
        let n = tx.build(&mut buf, due, ERR_SEND).unwrap();
        let at = OwampTime::from_raw(due.raw() + SEC / 1000);
        if seq % 9 == 4 {
            continue; // lost in the network
        }
        whole.receive(&buf[..n], at, ERR_RECV, 64).unwrap();
        streamed.receive(&buf[..n], at, ERR_RECV, 64).unwrap();
        if seq % 10 == 0 {
            taken.extend(streamed.take_records());
        }
    }
    // The sender stalls: time passes far beyond the timeouts of packets 50..
    let (_, due50) = tx.next_due().unwrap();
    let late = OwampTime::from_raw(due50.raw() + 5 * SEC);
    whole.poll(late, ERR_RECV);
    streamed.poll(late, ERR_RECV);
    taken.extend(streamed.take_records());
    assert!(taken.iter().any(|r| r.is_lost() && r.seq >= 50));
    let end = SessionEnd {
        sid: SID,
        next_seqno: 50,
        skips: Vec::new(),
        accept: owamp_core::control::AcceptCode::Ok,
        stop_time: late,
    };
    let expect = whole.finish(late, Some(50), ERR_RECV).unwrap();
    let e = streamed.finish_stream(SID, Some(&end), ERR_RECV);
    assert_eq!(e.finished, Finished::Normal);
    assert_eq!(e.next_seqno, 50);
    let prune = e.prune.expect("records handed out must go");
    taken.retain(|r| prune.keeps(r));
    taken.extend(e.tail);
    assert_eq!(taken, expect);
    assert_eq!(expect.len(), 50);
    assert_eq!(expect.iter().filter(|r| r.is_lost()).count(), 6);
}

/// Without a prune to apply, the end says so (no file needs rewriting); a packet received
/// past Next-Seqno makes the session incomplete with the records as received.
#[test]
fn stream_end_without_prune_and_when_incomplete() {
    use owamp_core::io::{Finished, SessionEnd};
    let p = params(20, 0);
    let mut tx = Sender::new(p.clone(), PacketProtection::Open).unwrap();
    let mut rx = Receiver::new(p.clone(), PacketProtection::Open);
    let mut buf = [0u8; 14];
    let mut last = OwampTime::from_raw(0);
    let mut taken = Vec::new();
    while let Some((_, due)) = tx.next_due() {
        let n = tx.build(&mut buf, due, ERR_SEND).unwrap();
        last = OwampTime::from_raw(due.raw() + SEC / 1000);
        rx.receive(&buf[..n], last, ERR_RECV, 64).unwrap();
        taken.extend(rx.take_records());
    }
    let twin = rx.clone();
    let end = |next_seqno| SessionEnd {
        sid: SID,
        next_seqno,
        skips: Vec::new(),
        accept: owamp_core::control::AcceptCode::Ok,
        stop_time: last,
    };
    let e = rx.finish_stream(SID, Some(&end(20)), ERR_RECV);
    assert_eq!(
        (e.finished, e.prune, e.tail.len()),
        (Finished::Normal, None, 0)
    );
    assert_eq!(taken.len(), 20);
    let e = twin.finish_stream(SID, Some(&end(10)), ERR_RECV);
    assert_eq!(e.finished, Finished::Incomplete);
    assert_eq!(e.prune, None);
}
