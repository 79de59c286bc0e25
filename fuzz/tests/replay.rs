//! Runs every fuzz target's check on its committed seeds and regression inputs, and on a
//! bounded number of deterministic mutations of them, with a stable toolchain:
//! `cargo test --manifest-path fuzz/Cargo.toml`.

use std::path::Path;

use owamp_fuzz::replay::{inputs, mutate, seed_of, Rng};
use owamp_fuzz::TARGETS;

const FUZZ_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Mutations per committed input.
const MUTATIONS: usize = 200;

#[test]
fn every_target_has_a_binary_and_seeds() {
    let manifest = std::fs::read_to_string(Path::new(FUZZ_DIR).join("Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        let bin = Path::new(FUZZ_DIR).join(format!("fuzz_targets/{name}.rs"));
        let src = std::fs::read_to_string(&bin).unwrap_or_else(|e| panic!("{bin:?}: {e}"));
        assert!(src.contains(&format!("owamp_fuzz::{name}(")), "{bin:?}");
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name} not in Cargo.toml"
        );
        assert!(
            !inputs(Path::new(FUZZ_DIR), name).is_empty(),
            "{name} has no seeds"
        );
    }
    let bins = manifest.matches("[[bin]]").count();
    assert_eq!(
        bins,
        TARGETS.len(),
        "a [[bin]] without a check, or the reverse"
    );
}

/// Runs one input; on a failure, keeps the input under `target/replay-failures/` (to add to
/// `regressions/<target>/` once fixed) before failing.
fn run(name: &str, check: owamp_fuzz::Check, input: &[u8]) {
    if std::panic::catch_unwind(|| check(input)).is_err() {
        let dir = Path::new(FUZZ_DIR).join("target/replay-failures");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}-{:016x}", seed_of(&hex::encode(input))));
        std::fs::write(&path, input).unwrap();
        panic!("{name} fails on the input kept in {}", path.display());
    }
}

#[test]
fn seeds_regressions_and_mutations() {
    for (name, check) in TARGETS {
        let mut rng = Rng::new(seed_of(name));
        for (path, bytes) in inputs(Path::new(FUZZ_DIR), name) {
            eprintln!("{name}: {}", path.display());
            run(name, *check, &bytes);
            for _ in 0..MUTATIONS {
                let m = mutate(&bytes, &mut rng);
                run(name, *check, &m);
            }
        }
        // Inputs shorter than any header.
        for n in 0..64 {
            check(&vec![0u8; n]);
            check(&vec![0xffu8; n]);
        }
    }
}
