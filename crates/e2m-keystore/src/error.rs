//! Errors of the store traits.

/// Why a store operation failed. No variant carries key material or a session id.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A configured limit would be exceeded (sessions per EMSE, sessions in all,
    /// subscriptions per session or in all). Nothing was changed.
    #[error("store limit reached: {0}")]
    LimitReached(Limit),
    /// The operating system's random generator failed, so no session id could be made.
    #[error("random generator unavailable")]
    RandomUnavailable,
    /// A value is outside what the store accepts (for example an empty callback).
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// A provisioning row (line `line` of its file) maps an EMSE_Id and application
    /// identity that are already mapped to another IMSI, in the store or earlier in the
    /// same call. Nothing of the call was stored.
    #[error("provisioning row at line {line} conflicts with an existing mapping to another IMSI")]
    ImportConflict {
        /// The row's line ([`IdentityRow::line`](crate::import::IdentityRow::line)).
        line: usize,
    },
    /// The backend failed (I/O, connection, corruption). Persistent backends wrap their
    /// own error here; the in-memory stores never return it.
    #[error("store backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// Which limit a [`StoreError::LimitReached`] hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// [`SessionPolicy::max_per_emse`](crate::SessionPolicy::max_per_emse).
    SessionsPerEmse,
    /// [`SessionPolicy::max_total`](crate::SessionPolicy::max_total).
    SessionsTotal,
    /// [`SubscriptionPolicy::max_per_session`](crate::SubscriptionPolicy::max_per_session).
    SubscriptionsPerSession,
    /// [`SubscriptionPolicy::max_total`](crate::SubscriptionPolicy::max_total).
    SubscriptionsTotal,
    /// [`SubscriptionPolicy::max_per_ue`](crate::SubscriptionPolicy::max_per_ue).
    SubscriptionsPerUe,
    /// [`AkmaPolicy::notify_per_ue`](crate::AkmaPolicy::notify_per_ue).
    NotifyTargetsPerUe,
}

impl core::fmt::Display for Limit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Limit::SessionsPerEmse => "sessions per EMSE",
            Limit::SessionsTotal => "sessions in total",
            Limit::SubscriptionsPerSession => "subscriptions per session",
            Limit::SubscriptionsTotal => "subscriptions in total",
            Limit::SubscriptionsPerUe => "subscriptions of one EMSE for one UE",
            Limit::NotifyTargetsPerUe => "AKMA notification targets per UE",
        })
    }
}

/// Why a policy value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Keys per UE must be 1 to [`RetentionPolicy::MAX_KEYS_PER_UE`](crate::RetentionPolicy::MAX_KEYS_PER_UE).
    #[error("keys per UE must be 1 to 16")]
    KeysPerUe,
    /// A lifetime or limit of zero would make the store useless.
    #[error("{0} must not be zero")]
    Zero(&'static str),
    /// A count above what the policy type allows (the field is named).
    #[error("{0} is too large")]
    TooMany(&'static str),
}
