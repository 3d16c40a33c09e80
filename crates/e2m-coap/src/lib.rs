#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]

extern crate alloc;

mod code;
mod error;
mod message;
mod options;
mod view;

pub use code::{Code, MessageType};
pub use error::CoapError;
pub use message::{Message, Token};
pub use options::{OptionNumber, Options};
pub use view::{MessageView, MessageWriter, OptionsView, encode_parts};
