//! Support code shared by the workspace's runnable examples (`examples/`) and benchmarks
//! (`benches/`). Not published; library users depend on the `e2m-*` crates directly.

pub mod aka;
pub mod dtls;
pub mod emks_http;
pub mod emse;
pub mod pki;
