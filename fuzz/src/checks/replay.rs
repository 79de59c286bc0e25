//! Replaying committed inputs through the checks without a fuzzing runtime: the seeds under
//! `fuzz/seeds/<target>/`, the crash inputs kept under `fuzz/regressions/<target>/`, and a
//! bounded number of deterministic mutations of each.

use std::fs;
use std::path::{Path, PathBuf};

/// The files of `dir` (sorted by name; none if it does not exist).
pub fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<(PathBuf, Vec<u8>)> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter_map(|p| fs::read(&p).ok().map(|b| (p, b)))
        .collect();
    v.sort();
    v
}

/// Seeds and regression inputs of `target`, under the fuzz folder `fuzz_dir`.
pub fn inputs(fuzz_dir: &Path, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v = files(&fuzz_dir.join("seeds").join(target));
    v.extend(files(&fuzz_dir.join("regressions").join(target)));
    v
}

/// A small deterministic generator (xorshift64*), so that failures reproduce.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value; zero is remapped).
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A seed for [`Rng`] from a name (FNV-1a).
pub fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One random mutation of `input`, in the spirit of libFuzzer's: flip a bit, set an octet to
/// an interesting value, truncate, cut out, duplicate or insert a run of octets.
pub fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    const INTERESTING: [u8; 8] = [0, 1, 2, 3, 4, 0x7f, 0x80, 0xff];
    let mut v = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = v.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if len > 0 => v.truncate(rng.below(len)),
            3 if len > 1 => {
                let a = rng.below(len);
                let b = a + rng.below(len - a);
                v.drain(a..b);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = a + rng.below((len - a).min(64));
                let run = v[a..b].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, run);
            }
            _ => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let run: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                v.splice(at..at, run);
            }
        }
    }
    v
}
