//! [`AkmaContexts`] and [`AkmaOutbox`] on PostgreSQL: the AAnF's contexts shared by every
//! instance on the database, K_AKMA sealed (e2m-seal's `AkmaKeyRecord`: bound to the UE,
//! the A-KID, the registration time and the expiry, under its own kind label).
//!
//! Tables (created at connect with the rest of the schema; the format is unchanged, since
//! nothing existing changes meaning):
//! - `akma_contexts (ue PK, a_kid UNIQUE, registered, expires, kek_version, sealed)`: the
//!   A-KID index is the row's own unique column, so replacing a UE's row replaces its
//!   index entry in the same statement;
//! - `akma_notify (ue, af, a_kid) PK → (uri, until)`: notification targets;
//! - `akma_outbox (id, af, uri, a_kid, time, due, attempts, owner)`.
//!
//! Registration, a retrieval that stores a target, and removal are server-side functions
//! (one statement, one round trip) that take the UE's advisory lock first, so all changes
//! of one UE's context and targets are serialised between instances, and each statement in
//! them (READ COMMITTED, VOLATILE) sees what the previous lock holder committed: a removal
//! reads every target committed before it, and writes their outbox rows, the deletion of
//! the context and of the targets in its one transaction. A retrieval takes the lock before
//! it re-reads the context, never after a row lock, so no lock order can deadlock.

use std::sync::Arc;

use e2m_keystore::akma::{
    AkmaContext, AkmaContexts, AkmaOutbox, AkmaPendingNotification, AkmaPolicy, AkmaRegistered,
    AkmaRemoved, NotifyTarget,
};
use e2m_keystore::e2m_keyid::akma::{AKid, Fqdn, UeId};
use e2m_keystore::{Claim, InstanceId, Limit, StoreError, Timestamp};
use e2m_seal::{AkmaKeyRecord, Kakma, SealNonce, SealedKey};

use crate::backend::{Shared, db_time, from_db_time};
use crate::{BackendError, PgBackend};

/// Salt of the UEs' advisory lock keys (`hashtextextended(ue, salt)`): any bigint, shared
/// with other lock keys only by chance (which costs contention, never correctness).
const UE_LOCK_SALT: i64 = 0x414b_4d41; // "AKMA"

/// The most due entries one claim locks and looks at.
const CLAIM_SCAN: i64 = 4096;

/// The AKMA part of the schema and its statements, for schema `s`.
#[derive(Debug)]
pub(crate) struct AkmaSql {
    pub(crate) ddl: String,
    register: String,
    by_a_kid: String,
    by_a_kid_with_target: String,
    retrieve_noting: String,
    by_ue: String,
    remove: String,
    sweep: String,
    stored: String,
    claim: String,
    delivered: String,
    retry: String,
    next_due: String,
    pending: String,
}

fn ddl(s: &str) -> String {
    format!(
        "
CREATE TABLE IF NOT EXISTS {s}.akma_contexts (
    ue          text   PRIMARY KEY,
    a_kid       text   NOT NULL UNIQUE,
    registered  bigint NOT NULL,
    expires     bigint NOT NULL,
    kek_version bigint NOT NULL,
    sealed      bytea  NOT NULL
);
CREATE INDEX IF NOT EXISTS akma_contexts_expires ON {s}.akma_contexts (expires);
CREATE TABLE IF NOT EXISTS {s}.akma_notify (
    ue    text   NOT NULL,
    af    text   NOT NULL,
    a_kid text   NOT NULL,
    uri   text   NOT NULL,
    until bigint NOT NULL,
    PRIMARY KEY (ue, af, a_kid)
);
CREATE INDEX IF NOT EXISTS akma_notify_until ON {s}.akma_notify (until);
CREATE SEQUENCE IF NOT EXISTS {s}.akma_outbox_ids;
CREATE TABLE IF NOT EXISTS {s}.akma_outbox (
    id       bigint  PRIMARY KEY DEFAULT nextval('{s}.akma_outbox_ids'),
    af       text    NOT NULL,
    uri      text    NOT NULL,
    a_kid    text    NOT NULL,
    time     bigint  NOT NULL,
    due      bigint  NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    owner    bigint
);
CREATE INDEX IF NOT EXISTS akma_outbox_due ON {s}.akma_outbox (due, id);

-- A registration under the UE's lock: an A-KID held by another UE's live context is
-- 'taken' (nothing changes); one held by an expired context gives way; the UE's row is
-- replaced with its A-KID (the unique column: the old A-KID's index entry goes with it).
CREATE OR REPLACE FUNCTION {s}.akma_register(
    p_ue text, p_a_kid text, p_registered bigint, p_expires bigint, p_kek_version bigint,
    p_sealed bytea, p_now bigint)
RETURNS TABLE (r_outcome text, r_old_a_kid text)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_holder text;
    v_holder_expires bigint;
    v_old text;
    v_old_expires bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_ue, {salt}));
    SELECT c.ue, c.expires INTO v_holder, v_holder_expires
        FROM {s}.akma_contexts c WHERE c.a_kid = p_a_kid;
    IF FOUND AND v_holder <> p_ue THEN
        IF v_holder_expires > p_now THEN
            RETURN QUERY SELECT 'taken'::text, NULL::text;
            RETURN;
        END IF;
        DELETE FROM {s}.akma_contexts c WHERE c.ue = v_holder AND c.a_kid = p_a_kid;
    END IF;
    SELECT c.a_kid, c.expires INTO v_old, v_old_expires
        FROM {s}.akma_contexts c WHERE c.ue = p_ue;
    INSERT INTO {s}.akma_contexts (ue, a_kid, registered, expires, kek_version, sealed)
        VALUES (p_ue, p_a_kid, p_registered, p_expires, p_kek_version, p_sealed)
        ON CONFLICT (ue) DO UPDATE SET a_kid = EXCLUDED.a_kid,
            registered = EXCLUDED.registered, expires = EXCLUDED.expires,
            kek_version = EXCLUDED.kek_version, sealed = EXCLUDED.sealed;
    IF v_old IS NOT NULL AND v_old_expires > p_now THEN
        RETURN QUERY SELECT 'replaced'::text, v_old;
    ELSE
        RETURN QUERY SELECT 'stored'::text, NULL::text;
    END IF;
EXCEPTION WHEN unique_violation THEN
    -- Another UE's registration of this A-KID committed meanwhile.
    RETURN QUERY SELECT 'taken'::text, NULL::text;
END
$fn$;

-- A retrieval that stores a notification target: the UE read without a lock, its lock
-- taken, the context read again (it may have changed while waiting), then the target.
CREATE OR REPLACE FUNCTION {s}.akma_retrieve_noting(
    p_a_kid text, p_now bigint, p_af text, p_uri text, p_limit integer)
RETURNS TABLE (r_status text, r_ue text, r_registered bigint, r_expires bigint, r_sealed bytea)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_ue text;
    c record;
    v_until bigint;
    v_live integer;
BEGIN
    SELECT x.ue INTO v_ue FROM {s}.akma_contexts x
        WHERE x.a_kid = p_a_kid AND x.expires > p_now;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(v_ue, {salt}));
    SELECT x.ue, x.registered, x.expires, x.sealed INTO c FROM {s}.akma_contexts x
        WHERE x.ue = v_ue AND x.a_kid = p_a_kid AND x.expires > p_now;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT n.until INTO v_until FROM {s}.akma_notify n
        WHERE n.ue = v_ue AND n.af = p_af AND n.a_kid = p_a_kid;
    IF NOT (FOUND AND v_until > p_now) THEN
        SELECT count(*) INTO v_live FROM {s}.akma_notify n
            WHERE n.ue = v_ue AND n.until > p_now;
        IF v_live >= p_limit THEN
            RETURN QUERY SELECT 'full'::text, NULL::text, NULL::bigint, NULL::bigint, NULL::bytea;
            RETURN;
        END IF;
    END IF;
    INSERT INTO {s}.akma_notify (ue, af, a_kid, uri, until)
        VALUES (v_ue, p_af, p_a_kid, p_uri, c.expires)
        ON CONFLICT (ue, af, a_kid) DO UPDATE SET uri = EXCLUDED.uri, until = EXCLUDED.until;
    RETURN QUERY SELECT 'ok'::text, c.ue, c.registered, c.expires, c.sealed;
END
$fn$;

-- A removal under the UE's lock: an outbox row per live target, then the targets and the
-- context, in one transaction.
CREATE OR REPLACE FUNCTION {s}.akma_remove(p_ue text, p_now bigint)
RETURNS TABLE (r_a_kid text, r_noted integer)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_a_kid text;
    v_expires bigint;
    v_noted integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_ue, {salt}));
    INSERT INTO {s}.akma_outbox (af, uri, a_kid, time, due)
        SELECT n.af, n.uri, n.a_kid, p_now, p_now FROM {s}.akma_notify n
        WHERE n.ue = p_ue AND n.until > p_now ORDER BY n.af, n.a_kid;
    GET DIAGNOSTICS v_noted = ROW_COUNT;
    DELETE FROM {s}.akma_notify n WHERE n.ue = p_ue;
    DELETE FROM {s}.akma_contexts c WHERE c.ue = p_ue RETURNING c.a_kid, c.expires
        INTO v_a_kid, v_expires;
    RETURN QUERY SELECT CASE WHEN v_expires > p_now THEN v_a_kid END, v_noted;
END
$fn$;
",
        salt = UE_LOCK_SALT
    )
}

impl AkmaSql {
    pub(crate) fn new(s: &str) -> AkmaSql {
        AkmaSql {
            ddl: ddl(s),
            register: format!(
                "SELECT r_outcome, r_old_a_kid FROM {s}.akma_register($1, $2, $3, $4, $5, $6, $7)"
            ),
            by_a_kid: format!(
                "SELECT ue, registered, expires, sealed FROM {s}.akma_contexts \
                 WHERE a_kid = $1 AND expires > $2"
            ),
            // The context and, if stored, this AF's target for it: a retrieval whose target
            // is already stored as it would be is served without a write.
            by_a_kid_with_target: format!(
                "SELECT c.ue, c.registered, c.expires, c.sealed, n.uri, n.until \
                 FROM {s}.akma_contexts c LEFT JOIN {s}.akma_notify n \
                 ON n.ue = c.ue AND n.af = $3 AND n.a_kid = c.a_kid \
                 WHERE c.a_kid = $1 AND c.expires > $2"
            ),
            retrieve_noting: format!(
                "SELECT r_status, r_ue, r_registered, r_expires, r_sealed \
                 FROM {s}.akma_retrieve_noting($1, $2, $3, $4, $5)"
            ),
            by_ue: format!(
                "SELECT a_kid, registered, expires, sealed FROM {s}.akma_contexts \
                 WHERE ue = $1 AND expires > $2"
            ),
            remove: format!("SELECT r_a_kid, r_noted FROM {s}.akma_remove($1, $2)"),
            sweep: format!(
                "WITH c AS (DELETE FROM {s}.akma_contexts WHERE expires <= $1 RETURNING 1), \
                 t AS (DELETE FROM {s}.akma_notify WHERE until <= $1 RETURNING 1) \
                 SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM t)"
            ),
            stored: format!("SELECT count(*) FROM {s}.akma_contexts"),
            // As the EMKS outbox's claim (`schema::Sql::outbox_claim`), per AF.
            claim: format!(
                "WITH cand AS (SELECT o.id, o.af, o.due FROM {s}.akma_outbox o \
                               WHERE o.due <= $1 AND NOT (o.af = ANY($2::text[])) \
                               ORDER BY o.due, o.id LIMIT $3 FOR UPDATE SKIP LOCKED), \
                 pick AS (SELECT id FROM (SELECT id, due, row_number() OVER \
                                          (PARTITION BY af ORDER BY due, id) AS rn FROM cand) r \
                          WHERE rn <= $4 ORDER BY due, id LIMIT $5) \
                 UPDATE {s}.akma_outbox o SET due = $6, owner = $7 FROM pick \
                 WHERE o.id = pick.id \
                 RETURNING o.id, o.af, o.uri, o.a_kid, o.time, o.attempts"
            ),
            delivered: format!("DELETE FROM {s}.akma_outbox WHERE id = $1"),
            retry: format!(
                "UPDATE {s}.akma_outbox SET due = $2, owner = NULL, attempts = attempts + 1 \
                 WHERE id = $1 AND owner = $3"
            ),
            next_due: format!("SELECT min(due) FROM {s}.akma_outbox"),
            pending: format!("SELECT count(*) FROM {s}.akma_outbox"),
        }
    }
}

/// The [`AkmaContexts`] (and its [`AkmaOutbox`]) over PostgreSQL. Made by
/// [`PgBackend::akma`].
///
/// Every K_AKMA is stored sealed (AES-256-GCM-SIV under the newest KEK, bound to its UE,
/// A-KID, registration and expiry); a registration or removal returns only after its
/// transaction committed with `synchronous_commit=on`.
pub struct PgAkmaContexts {
    shared: Arc<Shared>,
    policy: AkmaPolicy,
}

impl core::fmt::Debug for PgAkmaContexts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PgAkmaContexts")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl PgBackend {
    /// The AKMA context store, applying `policy` (every instance on one database should use
    /// the same). Its removals announce their notifications on the outbox's channel, so
    /// [`PgBackend::outbox_wakeups`] wakes AKMA deliverers too.
    pub fn akma(&self, policy: AkmaPolicy) -> PgAkmaContexts {
        PgAkmaContexts {
            shared: self.shared.clone(),
            policy,
        }
    }
}

fn corrupt(what: &'static str) -> BackendError {
    BackendError::CorruptRow(what)
}

fn id_param(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(-1)
}

fn capped(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PgAkmaContexts {
    /// Opens a stored row's K_AKMA: the record it is bound to is rebuilt from the row's
    /// place, so a row moved or edited fails to open.
    fn context(
        &self,
        ue: UeId,
        a_kid: AKid,
        registered: i64,
        expires: i64,
        sealed: &[u8],
    ) -> Result<AkmaContext, BackendError> {
        let (registered, expires) = (from_db_time(registered)?, from_db_time(expires)?);
        let record = AkmaKeyRecord::new(&ue, &a_kid, registered, expires);
        let sealed = SealedKey::from_bytes(sealed).map_err(BackendError::Open)?;
        let k_akma = self
            .shared
            .keyring
            .open_k_akma(&record, &sealed)
            .map_err(BackendError::Open)?;
        Ok(AkmaContext {
            ue,
            a_kid,
            k_akma,
            registered,
            expires,
        })
    }

    async fn register_now(
        &self,
        ue: &UeId,
        a_kid: &AKid,
        k_akma: &Kakma,
        now: Timestamp,
    ) -> Result<AkmaRegistered, BackendError> {
        let expires = self.policy.expires_at(now);
        let record = AkmaKeyRecord::new(ue, a_kid, now, expires);
        let nonce = SealNonce::random().map_err(BackendError::Seal)?;
        let sealed = self
            .shared
            .keyring
            .seal_k_akma(&record, k_akma, nonce)
            .map_err(BackendError::Seal)?;
        let rows = self
            .shared
            .query(
                &self.shared.akma.register,
                &[
                    &ue.to_string(),
                    &a_kid.as_str(),
                    &db_time(now),
                    &db_time(expires),
                    &i64::from(sealed.kek_version().get()),
                    &sealed.as_bytes().as_slice(),
                    &db_time(now),
                ],
            )
            .await?;
        let row = rows
            .first()
            .ok_or(corrupt("akma_register answered nothing"))?;
        let outcome: &str = row.try_get(0)?;
        match outcome {
            "stored" => Ok(AkmaRegistered::Stored),
            "taken" => Ok(AkmaRegistered::AKidTaken),
            "replaced" => {
                let old: &str = row.try_get(1)?;
                let old = AKid::parse(old).map_err(|_| corrupt("stored A-KID"))?;
                Ok(AkmaRegistered::Replaced { old })
            }
            _ => Err(corrupt("unknown akma_register outcome")),
        }
    }

    /// A context row `(ue, registered, expires, sealed, …)` of `a_kid`.
    fn context_at(
        &self,
        row: &tokio_postgres::Row,
        a_kid: &AKid,
    ) -> Result<AkmaContext, BackendError> {
        let ue: &str = row.try_get(0)?;
        let ue = UeId::parse(ue).map_err(|_| corrupt("stored UE"))?;
        let sealed: &[u8] = row.try_get(3)?;
        self.context(ue, *a_kid, row.try_get(1)?, row.try_get(2)?, sealed)
    }

    async fn retrieve_now(
        &self,
        a_kid: &AKid,
        notify: Option<&NotifyTarget>,
        now: Timestamp,
    ) -> Result<Option<AkmaContext>, StoreError> {
        let sql = &self.shared.akma;
        let Some(target) = notify else {
            let rows = self
                .shared
                .query(&sql.by_a_kid, &[&a_kid.as_str(), &db_time(now)])
                .await?;
            return match rows.first() {
                Some(row) => Ok(Some(self.context_at(row, a_kid)?)),
                None => Ok(None),
            };
        };
        let rows = self
            .shared
            .query(
                &sql.by_a_kid_with_target,
                &[&a_kid.as_str(), &db_time(now), &target.af().as_str()],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let uri: Option<&str> = row.try_get(4).map_err(BackendError::from)?;
        let until: Option<i64> = row.try_get(5).map_err(BackendError::from)?;
        let expires: i64 = row.try_get(2).map_err(BackendError::from)?;
        if uri == Some(target.uri()) && until == Some(expires) {
            return Ok(Some(self.context_at(row, a_kid)?));
        }
        let rows = self
            .shared
            .query(
                &sql.retrieve_noting,
                &[
                    &a_kid.as_str(),
                    &db_time(now),
                    &target.af().as_str(),
                    &target.uri(),
                    &i32::try_from(self.policy.notify_per_ue()).unwrap_or(i32::MAX),
                ],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let status: &str = row.try_get(0).map_err(BackendError::from)?;
        match status {
            "ok" => {
                let ue: &str = row.try_get(1).map_err(BackendError::from)?;
                let ue = UeId::parse(ue).map_err(|_| corrupt("stored UE"))?;
                let sealed: &[u8] = row.try_get(4).map_err(BackendError::from)?;
                let registered: i64 = row.try_get(2).map_err(BackendError::from)?;
                let expires: i64 = row.try_get(3).map_err(BackendError::from)?;
                Ok(Some(self.context(ue, *a_kid, registered, expires, sealed)?))
            }
            "full" => Err(StoreError::LimitReached(Limit::NotifyTargetsPerUe)),
            _ => Err(corrupt("unknown akma_retrieve_noting status").into()),
        }
    }

    async fn context_of_now(
        &self,
        ue: &UeId,
        now: Timestamp,
    ) -> Result<Option<AkmaContext>, BackendError> {
        let rows = self
            .shared
            .query(&self.shared.akma.by_ue, &[&ue.to_string(), &db_time(now)])
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let a_kid: &str = row.try_get(0)?;
        let a_kid = AKid::parse(a_kid).map_err(|_| corrupt("stored A-KID"))?;
        let sealed: &[u8] = row.try_get(3)?;
        self.context(*ue, a_kid, row.try_get(1)?, row.try_get(2)?, sealed)
            .map(Some)
    }

    async fn remove_now(&self, ue: &UeId, now: Timestamp) -> Result<AkmaRemoved, BackendError> {
        let rows = self
            .shared
            .query(&self.shared.akma.remove, &[&ue.to_string(), &db_time(now)])
            .await?;
        let row = rows
            .first()
            .ok_or(corrupt("akma_remove answered nothing"))?;
        let a_kid: Option<&str> = row.try_get(0)?;
        let noted: i32 = row.try_get(1)?;
        if noted > 0 {
            // Wake the deliverers of every instance (off the removal's transaction, as
            // the EMKS outbox's pushes do: see `Shared::announce`).
            self.shared.announce();
        }
        Ok(AkmaRemoved {
            a_kid: a_kid
                .map(AKid::parse)
                .transpose()
                .map_err(|_| corrupt("stored A-KID"))?,
            notifications: usize::try_from(noted).unwrap_or(0),
        })
    }

    async fn claim_now(
        &self,
        claim: &Claim<'_, Fqdn>,
    ) -> Result<Vec<AkmaPendingNotification>, BackendError> {
        let skip: Vec<&str> = claim.skip.iter().map(Fqdn::as_str).collect();
        let scan = capped(claim.max.saturating_mul(4)).clamp(1, CLAIM_SCAN);
        let instance = i64::from_ne_bytes(claim.instance.as_u64().to_ne_bytes());
        let rows = self
            .shared
            .query(
                &self.shared.akma.claim,
                &[
                    &db_time(claim.now),
                    &skip,
                    &scan,
                    &capped(claim.per_emse),
                    &capped(claim.max),
                    &db_time(claim.lease_until()),
                    &instance,
                ],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get(0)?;
            let af: &str = row.try_get(1)?;
            let uri: &str = row.try_get(2)?;
            let a_kid: &str = row.try_get(3)?;
            let attempts: i32 = row.try_get(5)?;
            out.push(AkmaPendingNotification {
                id: u64::try_from(id).map_err(|_| corrupt("AKMA outbox id"))?,
                af: Fqdn::parse(af).map_err(|_| corrupt("AKMA outbox AF"))?,
                notif_uri: uri.into(),
                a_kid: AKid::parse(a_kid).map_err(|_| corrupt("AKMA outbox A-KID"))?,
                time: from_db_time(row.try_get(4)?)?,
                attempts: u32::try_from(attempts).unwrap_or(0),
            });
        }
        out.sort_by_key(|p| p.id);
        Ok(out)
    }

    async fn count(&self, sql: &str) -> Result<u64, BackendError> {
        let rows = self.shared.query(sql, &[]).await?;
        let n: i64 = match rows.first() {
            Some(row) => row.try_get(0)?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

impl AkmaContexts for PgAkmaContexts {
    fn policy(&self) -> AkmaPolicy {
        self.policy
    }

    async fn register(
        &self,
        ue: &UeId,
        a_kid: &AKid,
        k_akma: &Kakma,
        now: Timestamp,
    ) -> Result<AkmaRegistered, StoreError> {
        Ok(self.register_now(ue, a_kid, k_akma, now).await?)
    }

    async fn retrieve(
        &self,
        a_kid: &AKid,
        notify: Option<&NotifyTarget>,
        now: Timestamp,
    ) -> Result<Option<AkmaContext>, StoreError> {
        self.retrieve_now(a_kid, notify, now).await
    }

    async fn context_of(
        &self,
        ue: &UeId,
        now: Timestamp,
    ) -> Result<Option<AkmaContext>, StoreError> {
        Ok(self.context_of_now(ue, now).await?)
    }

    async fn remove(&self, ue: &UeId, now: Timestamp) -> Result<AkmaRemoved, StoreError> {
        Ok(self.remove_now(ue, now).await?)
    }

    async fn sweep(&self, now: Timestamp) -> Result<usize, StoreError> {
        let rows = self
            .shared
            .query(&self.shared.akma.sweep, &[&db_time(now)])
            .await?;
        let n: i64 = match rows.first() {
            Some(row) => row.try_get(0).map_err(BackendError::from)?,
            None => 0,
        };
        Ok(usize::try_from(n).unwrap_or(0))
    }

    async fn stored(&self) -> Result<u64, StoreError> {
        Ok(self.count(&self.shared.akma.stored).await?)
    }
}

/// Each method is one autocommit statement.
impl AkmaOutbox for PgAkmaContexts {
    async fn claim_due(
        &self,
        claim: &Claim<'_, Fqdn>,
    ) -> Result<Vec<AkmaPendingNotification>, StoreError> {
        Ok(self.claim_now(claim).await?)
    }

    async fn delivered(&self, id: u64) -> Result<bool, StoreError> {
        let n = self
            .shared
            .execute(&self.shared.akma.delivered, &[&id_param(id)])
            .await?;
        Ok(n > 0)
    }

    async fn retry_at(
        &self,
        id: u64,
        instance: InstanceId,
        when: Timestamp,
    ) -> Result<bool, StoreError> {
        let instance = i64::from_ne_bytes(instance.as_u64().to_ne_bytes());
        let n = self
            .shared
            .execute(
                &self.shared.akma.retry,
                &[&id_param(id), &db_time(when), &instance],
            )
            .await?;
        Ok(n > 0)
    }

    async fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let rows = self.shared.query(&self.shared.akma.next_due, &[]).await?;
        let due: Option<i64> = match rows.first() {
            Some(row) => row.try_get(0).map_err(BackendError::from)?,
            None => None,
        };
        Ok(due.map(from_db_time).transpose()?)
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        Ok(self.count(&self.shared.akma.pending).await?)
    }
}
