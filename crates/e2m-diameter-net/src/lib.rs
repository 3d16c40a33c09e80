#![doc = include_str!("../README.md")]

mod endpoint;
mod tls;

pub use endpoint::{
    Endpoint, EndpointConfig, Incoming, IncomingRequest, PeerEvent, Remote, RequestError,
};
pub use tls::{ClientTls, certificate_dns_names};

// The crates whose types this crate's signatures expose.
pub use {e2m_diameter, rustls};
