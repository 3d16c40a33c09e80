//! Benchmarks of the redb store (written below).
fn main() {}
