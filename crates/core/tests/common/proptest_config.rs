//! The proptest settings every `tests/props.rs` of the workspace shares
//! (core's, store's, events'): included by path, one copy.

use proptest::test_runner::{Config, RngSeed};

/// A fixed seed, no persisted failures, and `NIMBUS_PROPTEST_CASES` cases
/// (default `default_cases`; bench/proptest.sh runs many more).
pub fn config(default_cases: u32) -> Config {
    let cases = std::env::var("NIMBUS_PROPTEST_CASES")
        .ok()
        .map(|v| v.parse().expect("NIMBUS_PROPTEST_CASES must be a number"))
        .unwrap_or(default_cases);
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x6e69_6d62_7573),
        failure_persistence: None,
        ..Config::default()
    }
}
