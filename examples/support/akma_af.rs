//! The AF's side of Naanf_AKMA_ApplicationKey_Get (TS 33.535 §6.3, TS 29.535 §5.2.2.3):
//! `e2m_sbi::client::AfClient` as the `AkmaKeyFetcher` under `e2m_dtls`'s
//! `AkmaKeySource` (its key cache and memory of "no key" answers), directly to the AAnF
//! or through the NEF's AKMA API (TS 29.522 §5.14; an AF outside the operator's domain).
//! Shared by the `af` example and the demo.
//!
//! The request names this AF's AF_ID (FQDN ‖ the Ua* protocol of the DTLS suite, TS
//! 33.535 A.4) and, where the AF runs a notification endpoint, its `notifUri`; the AAnF
//! derives K_AF for the AF its certificate authenticates, whatever the body says.

use e2m_dtls::ResolveError;
use e2m_dtls::akma_source::{AfKey, AkmaKeyFetcher};
use e2m_sbi::client::{AfClient, ClientError};
use e2m_sbi::e2m_aanf::e2m_keyid::akma::{AKid, AfId};
use e2m_sbi::e2m_akma::{AkmaAfKeyRequest, NotifUri};

/// Which API the AF asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Naanf_AKMA at the AAnF (an AF inside the operator's domain).
    Aanf,
    /// The NEF's AKMA API (`/3gpp-akma/v1/retrieve`): never a SUPI.
    Nef,
}

/// K_AF from the AAnF (or the NEF) for this AF.
pub(crate) struct AanfKeys {
    client: AfClient,
    af_id: AfId,
    notif_uri: Option<NotifUri>,
    route: Route,
    anonymous: bool,
}

impl AanfKeys {
    /// Asks over `client` for `af_id`, giving `notif_uri` (if any) for the service
    /// disablement notification.
    pub(crate) fn new(client: AfClient, af_id: AfId, notif_uri: Option<NotifUri>) -> AanfKeys {
        AanfKeys {
            client,
            af_id,
            notif_uri,
            route: Route::Aanf,
            anonymous: false,
        }
    }

    /// Asks through `route`.
    pub(crate) fn route(mut self, route: Route) -> AanfKeys {
        self.route = route;
        self
    }

    /// Asks for anonymous user access (`anonInd`: K_AF and its expiry, no UE identity;
    /// `Naanf_AKMA_ApplicationKey_AnonUser_Get`).
    pub(crate) fn anonymous(mut self, anonymous: bool) -> AanfKeys {
        self.anonymous = anonymous;
        self
    }

    fn request(&self, a_kid: &AKid) -> AkmaAfKeyRequest {
        AkmaAfKeyRequest {
            af_id: self.af_id,
            a_kid: *a_kid,
            notif_uri: self.notif_uri.clone(),
            anon_ind: self.anonymous,
            supp_feat: None,
        }
    }
}

/// How the DTLS server sees a failed request: a refusal of this AF (4xx) is remembered
/// as "no key" for a moment, like a missing context; no answer, a timeout, congestion
/// (429) or a server fault (5xx) is not, and the next handshake asks again.
fn resolve_error(error: ClientError) -> ResolveError {
    match error.status() {
        Some(status) if (400..500).contains(&status) && status != 408 && status != 429 => {
            tracing::warn!(%error, "the AAnF refused this AF's request for K_AF");
            ResolveError::UnknownIdentity
        }
        _ => ResolveError::Unavailable(error.to_string()),
    }
}

impl AkmaKeyFetcher for AanfKeys {
    async fn fetch_kaf(&self, a_kid: &AKid) -> Result<AfKey, ResolveError> {
        let request = self.request(a_kid);
        let answer = match self.route {
            Route::Aanf => self
                .client
                .retrieve(&request)
                .await
                .map(|data| data.map(|d| AfKey::new(d.kaf, d.expiry.as_unix_secs()))),
            Route::Nef => self
                .client
                .retrieve_via_nef(&request)
                .await
                .map(|data| data.map(|d| AfKey::new(d.kaf, d.expiry.as_unix_secs()))),
        };
        match answer {
            Ok(Some(key)) => Ok(key),
            // 204: the AAnF holds no AKMA context for this A-KID (the UE must run primary
            // authentication again).
            Ok(None) => Err(ResolveError::UnknownIdentity),
            Err(error) => Err(resolve_error(error)),
        }
    }
}
