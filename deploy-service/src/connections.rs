//! `Connections`: users' own provider accounts. A token is verified with the provider before
//! it is saved, sealed with the [`Keyring`] (never stored, logged or returned in clear), and
//! opened only for the step of a deployment that uses it.

use autocrea_proto::deploy::v1 as pb;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Invalid, Result};
use crate::model::Provider;
use crate::providers::{Credentials, Providers};
use crate::secrets::{Keyring, token_context};
use crate::store::{ConnectionRecord, ConnectionStore, NewConnection};

/// Rows resealed per query of the re-encryption pass.
const RESEAL_BATCH: i64 = 200;

/// Users' connections: validation, verification with the provider, sealing.
#[derive(Debug)]
pub struct Connections {
    store: ConnectionStore,
    keyring: Keyring,
    providers: Providers,
}

/// An opened connection for one step: the credentials and the account they act in.
#[derive(Debug, Clone)]
pub struct Opened {
    /// Token and scoping.
    pub credentials: Credentials,
    /// The account's id at the provider.
    pub account_id: String,
}

impl Connections {
    /// Connections over `store`, sealed with `keyring`, verified through `providers`.
    pub fn new(store: ConnectionStore, keyring: Keyring, providers: Providers) -> Self {
        Self {
            store,
            keyring,
            providers,
        }
    }

    /// The SQL.
    pub fn store(&self) -> &ConnectionStore {
        &self.store
    }

    /// Verifies and saves the owner's connection. A token the provider refuses stores nothing.
    pub async fn put(
        &self,
        owner: &str,
        request: pb::PutConnectionRequest,
    ) -> Result<ConnectionRecord> {
        let provider = Provider::parse(&request.provider)?;
        let token = token(&request.token)?;
        let team_id = scope_id("teamId", request.team_id, provider, Provider::Vercel)?;
        let project_id = scope_id("projectId", request.project_id, provider, Provider::Railway)?;
        let environment_id = scope_id(
            "environmentId",
            request.environment_id,
            provider,
            Provider::Railway,
        )?;
        let workspace_id = scope_id(
            "workspaceId",
            request.workspace_id,
            provider,
            Provider::Railway,
        )?;
        if provider == Provider::Railway && project_id.is_none() && workspace_id.is_none() {
            return Err(Invalid::new(
                "projectId",
                "Railway needs the project to create services in (projectId), or a workspace \
                 to create a project in (workspaceId)",
            )
            .into());
        }
        let credentials = Credentials {
            token: token.clone(),
            team_id: team_id.clone(),
            project_id,
            environment_id,
        };
        let account = self
            .providers
            .verify(provider, &credentials, workspace_id.as_deref())
            .await?;
        let (key_id, token_sealed) = self
            .keyring
            .seal(&token, &token_context(owner, provider.as_str()));
        let secret = token.expose_secret();
        let last4 = secret
            .char_indices()
            .rev()
            .nth(3)
            .map_or(secret, |(i, _)| &secret[i..]);
        self.store
            .upsert(
                owner,
                provider,
                NewConnection {
                    account_id: account.id,
                    account_name: account.name,
                    token_sealed,
                    key_id,
                    token_last4: last4.to_string(),
                    team_id,
                    project_id: account.project_id,
                    environment_id: account.environment_id,
                },
            )
            .await
    }

    /// Removes the owner's connection to `provider`.
    pub async fn delete(&self, owner: &str, provider: &str) -> Result<()> {
        let provider = Provider::parse(provider)?;
        if self.store.delete(owner, provider).await? {
            Ok(())
        } else {
            Err(Error::ConnectionNotFound { provider })
        }
    }

    /// The owner's connection to `provider`, opened; `None` when there is none. A token that
    /// does not open (its key is no longer configured) is an error naming what to do.
    pub async fn open(&self, owner: &str, provider: Provider) -> Result<Option<Opened>, String> {
        let record = self
            .store
            .get(owner, provider)
            .await
            .map_err(|e| format!("cannot read the {provider} connection: {e}"))?;
        let Some(record) = record else {
            return Ok(None);
        };
        let token = self
            .keyring
            .open(
                &record.key_id,
                &record.token_sealed,
                &token_context(owner, provider.as_str()),
            )
            .map_err(|e| {
                format!(
                    "the saved {provider} token cannot be used ({e}); save the connection again \
                     with PUT /api/integrations/{}",
                    provider.as_str()
                )
            })?;
        if let Err(e) = self.store.touch(owner, provider).await {
            tracing::warn!(error = %e, "cannot record the connection's last use");
        }
        Ok(Some(Opened {
            credentials: Credentials {
                token,
                team_id: record.team_id,
                project_id: record.project_id,
                environment_id: record.environment_id,
            },
            account_id: record.account_id,
        }))
    }

    /// Reseals every token sealed with another key than the current one (after a rotation:
    /// `SECRETS_KEY` new, `SECRETS_KEY_PREVIOUS` old). Rows that do not open are left as they
    /// are and counted apart. Returns (resealed, unreadable).
    pub async fn reseal_all(&self) -> Result<(u64, u64)> {
        let (mut resealed, mut unreadable) = (0, 0);
        let mut skipped = std::collections::HashSet::new();
        loop {
            let stale = self
                .store
                .stale(
                    self.keyring.current_id(),
                    RESEAL_BATCH + skipped.len() as i64,
                )
                .await?;
            let todo: Vec<_> = stale
                .into_iter()
                .filter(|row| !skipped.contains(&(row.owner_id.clone(), row.provider.clone())))
                .collect();
            if todo.is_empty() {
                return Ok((resealed, unreadable));
            }
            for row in todo {
                let context = token_context(&row.owner_id, &row.provider);
                match self
                    .keyring
                    .reseal(&row.key_id, &row.token_sealed, &context)
                {
                    Ok((key_id, sealed)) => {
                        if self.store.reseal(&row, &key_id, &sealed).await? {
                            resealed += 1;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(
                            owner = %row.owner_id,
                            provider = %row.provider,
                            error = %e,
                            "a saved token cannot be resealed; its owner must save it again"
                        );
                        unreadable += 1;
                        skipped.insert((row.owner_id.clone(), row.provider.clone()));
                    }
                }
            }
        }
    }
}

/// A token: printable ASCII, no blanks (a pasted newline or space is refused, not guessed at).
fn token(raw: &str) -> Result<SecretString, Invalid> {
    if raw.is_empty() {
        return Err(Invalid::new(
            "token",
            "is required: your access token at the provider",
        ));
    }
    if raw.len() > 4096 || !raw.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Invalid::new(
            "token",
            "must be at most 4096 printable ASCII characters without spaces",
        ));
    }
    Ok(SecretString::from(raw.to_string()))
}

/// A provider scoping id that only `applies_to` takes.
fn scope_id(
    field: &'static str,
    raw: Option<String>,
    provider: Provider,
    applies_to: Provider,
) -> Result<Option<String>, Invalid> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if provider != applies_to {
        return Err(Invalid::new(
            field,
            format!("applies to {applies_to} connections only; leave it out for {provider}"),
        ));
    }
    if raw.is_empty()
        || raw.len() > 255
        || !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        return Err(Invalid::new(
            field,
            "must be the provider's id: 1 to 255 letters, digits, - and _",
        ));
    }
    Ok(Some(raw))
}

/// The wire form, without the token.
pub fn to_proto(record: ConnectionRecord) -> pb::Connection {
    pb::Connection {
        provider: record.provider.as_str().to_string(),
        account_id: record.account_id,
        account_name: record.account_name,
        token_last4: record.token_last4,
        team_id: record.team_id.unwrap_or_default(),
        project_id: record.project_id.unwrap_or_default(),
        environment_id: record.environment_id.unwrap_or_default(),
        created_at_ms: record.created_at_ms,
        last_used_at_ms: record.last_used_at_ms.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_scopes_are_checked() {
        assert_eq!(token("abc").unwrap().expose_secret(), "abc");
        assert_eq!(token(" abc").unwrap_err().field, "token");
        assert_eq!(token("").unwrap_err().field, "token");
        assert_eq!(token("a b").unwrap_err().field, "token");
        assert!(
            scope_id(
                "teamId",
                Some("team_1".into()),
                Provider::Vercel,
                Provider::Vercel
            )
            .is_ok()
        );
        let err = scope_id(
            "teamId",
            Some("t".into()),
            Provider::Netlify,
            Provider::Vercel,
        )
        .unwrap_err();
        assert!(err.message.contains("Vercel connections only"), "{err}");
        assert!(
            scope_id(
                "projectId",
                Some("a/b".into()),
                Provider::Railway,
                Provider::Railway
            )
            .is_err()
        );
        assert!(
            scope_id(
                "teamId",
                Some(String::new()),
                Provider::Vercel,
                Provider::Vercel
            )
            .is_err()
        );
        assert_eq!(
            scope_id("teamId", None, Provider::Netlify, Provider::Vercel).unwrap(),
            None
        );
    }
}
