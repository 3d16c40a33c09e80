//! How an EMSE names a UE.

use e2m_keyid::{AppIdentity, Imsi};

/// How an EMSE names a UE (seed 6.x.2.1, "Considerations on the user identity"), in a key
/// request, a subscription and a notification alike.
///
/// A notification names the UE the way the subscriber named it, so an EMSE never learns an
/// IMSI it did not already use.
///
/// Deliberately exhaustive (not `#[non_exhaustive]`): every encoder, router and store must
/// handle each way of naming a UE, and a new one changes the wire format and the XSD, so it
/// is a breaking change on purpose, caught at compile time in every match.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum UeRef {
    /// The UE's application layer identity, which the EMKS maps to an IMSI for this EMSE:
    /// the seed's preferred case 2.
    AppIdentity(AppIdentity),
    /// The IMSI, for an EMSE the operator lets know IMSIs (the seed's case 1, with its
    /// privacy implications: only where the operator allows it for that EMSE).
    Imsi(Imsi),
}
