#![doc = include_str!("../README.md")]

mod avp;
mod check;
mod codes;
mod dictionary;
mod error;
mod header;
mod message;
mod node;
mod value;

pub use avp::{Avp, AvpBuf, AvpFlags, AvpHeader, AvpIter, AvpKey};
pub use check::{Limits, ProtocolError, check_answer, check_request, error_answer};
pub use codes::{ApplicationId, AvpCode, CommandCode, DisconnectCause, ResultCode, address_family};
pub use dictionary::{
    Application, ApplicationInfo, ApplicationKind, AvpDef, AvpRule, CommandDef, Dictionary,
    DictionaryError, FlagRule, Grammar, GroupedContent,
};
pub use error::{AvpError, AvpErrorKind, DecodeError, EncodeError, FrameError, ValueError};
pub use header::{CommandFlags, HEADER_LEN, Header, MAX_LENGTH, VERSION, frame_len};
pub use message::{Message, MessageBuilder, MessageView, OwnedAvp, OwnedDecodeError, OwnedValue};
pub use node::{
    AdvertisedApplication, AnswerError, ConfigError, ConnectionId, DownReason, Event, IncomingId,
    Node, NodeConfig, PeerConfig, PeerId, PeerInfo, PeerState, RequestFailure, RequestId,
    SendError, Transmit, WatchdogState,
};
pub use value::{
    AaaProtocol, Address, DataType, DiameterUri, Time, Transport, Value, identity_cmp,
    validate_identity,
};
