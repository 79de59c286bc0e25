//! RFC 4656 Appendix B: the sums of the first 1,000,000 exponential deviates for four SIDs.

use owamp_core::session::ExpDeviates;
use owamp_core::wire::SessionId;

fn sid(hex_str: &str) -> SessionId {
    let mut b = [0u8; 16];
    hex::decode_to_slice(hex_str, &mut b).unwrap();
    SessionId(b)
}

fn sum_of_first_million(s: &str) -> u64 {
    let mut g = ExpDeviates::new(&sid(s));
    (0..1_000_000).fold(0u64, |acc, _| acc.wrapping_add(g.next_deviate()))
}

#[test]
fn appendix_b_sum_1() {
    assert_eq!(
        sum_of_first_million("2872979303ab47eeac028dab3829dab2"),
        0x000f_4479_bd31_7381
    );
}

#[test]
fn appendix_b_sum_2() {
    assert_eq!(
        sum_of_first_million("0102030405060708090a0b0c0d0e0f00"),
        0x000f_4336_8646_6a62
    );
}

#[test]
fn appendix_b_sum_3() {
    assert_eq!(
        sum_of_first_million("deadbeefdeadbeefdeadbeefdeadbeef"),
        0x000f_416c_8884_d2d3
    );
}

#[test]
fn appendix_b_sum_4() {
    assert_eq!(
        sum_of_first_million("feed0feed1feed2feed3feed4feed5ab"),
        0x000f_3f0b_4b41_6ec8
    );
}
