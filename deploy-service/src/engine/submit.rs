//! Sending a deployment to its provider: the credentials of the owner's connection (or the
//! operator's account), the project's home at the provider (created on its first deploy there
//! and remembered), then the provider's own way of shipping files.

use super::*;
use crate::connections::Opened;
use crate::model::{Provider, home_name, unique_home_name, vercel_framework};
use crate::projects::ProjectInfo;
use crate::providers::{DeployFile, Home, tarball};
use crate::store::HomeRecord;
use secrecy::SecretString;

impl DeployEngine {
    /// Does the provider's part of sending a deployment (or a rollback).
    pub(super) async fn submit(&self, record: &DeploymentRecord) -> Result<Submitted, StepFailure> {
        let opened = self.credentials(record).await.map_err(StepFailure::Fail)?;
        let credentials = &opened.credentials;
        if let Some(previous_id) = &record.rollback_of {
            let previous = self
                .store
                .get_any(previous_id)
                .await?
                .ok_or_else(|| StepFailure::Fail("the deployment to restore is gone".into()))?;
            let provider_id = previous.provider_deployment_id.as_deref().ok_or_else(|| {
                StepFailure::Fail("the deployment to restore has no provider id".into())
            })?;
            return Ok(self
                .providers
                .rollback(
                    record.provider,
                    credentials,
                    previous.provider_site_id.as_deref(),
                    provider_id,
                    record.target,
                )
                .await?);
        }
        // Read with the grant the gateway minted with the create call: the user's request is long
        // over by now, and this may be another replica or a restarted one.
        let grant = self.store.files_grant(&record.id).await?.ok_or_else(|| {
            StepFailure::Fail(
                "no permission to read the project files was kept; deploy again".into(),
            )
        })?;
        let project = self.projects.project(&grant, &record.project_id).await?;
        let files = self.files(record, &grant).await?;
        let home = self.home(record, &opened, &project).await?;
        match record.provider {
            Provider::Vercel => {
                let vercel = self.providers.vercel(credentials);
                if !record.env.is_empty() {
                    vercel.set_env(&home, &record.env).await?;
                }
                let framework = vercel_framework(&project.framework);
                Ok(vercel
                    .deploy(&home, framework, record.target, &files)
                    .await?)
            }
            Provider::Netlify => Ok(self
                .providers
                .netlify(credentials)
                .deploy(&home.id, record.target, &files)
                .await?),
            Provider::Railway => {
                let railway = self.providers.railway(credentials);
                // Onto this project's own service only: no other project or user shares it.
                if !record.env.is_empty() {
                    railway.set_variables(&home.id, &record.env).await?;
                }
                let tarball = tarball(&files).map_err(|e| {
                    StepFailure::Internal(Error::Internal(
                        anyhow::Error::new(e).context("cannot pack the project"),
                    ))
                })?;
                Ok(railway.up(&home.id, tarball).await?)
            }
        }
    }

    /// The project's home at the provider in the account `opened` acts in: the remembered one,
    /// or a new one (named after the project) that is remembered before anything is deployed to
    /// it, so a retried step reuses it.
    async fn home(
        &self,
        record: &DeploymentRecord,
        opened: &Opened,
        project: &ProjectInfo,
    ) -> Result<Home, StepFailure> {
        let homes = self.connections.store();
        let known = || async {
            let home = homes
                .home(&record.owner_id, &record.project_id, record.provider)
                .await?;
            // A home in an account the user has since replaced is not reachable with this token.
            Ok::<_, Error>(home.filter(|h| h.account_id == opened.account_id))
        };
        if let Some(home) = known().await? {
            return Ok(home_of(home));
        }
        // First deploys that run at once (two quick clicks) create one home, not one each.
        let _creating = self.creating_home.lock().await;
        if let Some(home) = known().await? {
            return Ok(home_of(home));
        }
        let credentials = &opened.credentials;
        let unique = unique_home_name(&project.name, &record.project_id);
        let home =
            match record.provider {
                Provider::Vercel => {
                    let vercel = self.providers.vercel(credentials);
                    let framework = vercel_framework(&project.framework);
                    match vercel
                    .create_project(&home_name(&project.name), framework)
                    .await?
                {
                    Some(home) => home,
                    None => vercel.create_project(&unique, framework).await?.ok_or_else(|| {
                        StepFailure::Fail(format!(
                            "the Vercel project names {} and {unique} are both taken in the \
                             account; rename the project",
                            home_name(&project.name)
                        ))
                    })?,
                }
                }
                // Netlify site names are subdomains shared by every account: the unique form.
                Provider::Netlify => {
                    self.providers
                        .netlify(credentials)
                        .create_site(&unique)
                        .await?
                }
                Provider::Railway => {
                    self.providers
                        .railway(credentials)
                        .create_service(&unique)
                        .await?
                }
            };
        let saved = homes
            .save_home(
                &record.owner_id,
                &record.project_id,
                &HomeRecord {
                    provider: record.provider,
                    account_id: opened.account_id.clone(),
                    target_id: home.id.clone(),
                    target_name: home.name.clone(),
                    created_at_ms: now_ms(),
                },
            )
            .await?;
        if saved.target_id != home.id {
            tracing::warn!(
                unused = %home.id,
                "another replica created this project's home first; the one created here is unused"
            );
        }
        Ok(home_of(saved))
    }

    async fn files(
        &self,
        record: &DeploymentRecord,
        grant: &SecretString,
    ) -> Result<Vec<DeployFile>, StepFailure> {
        let files = self.projects.files(grant, &record.project_id).await?;
        if files.is_empty() {
            return Err(StepFailure::Fail(
                "the project has no files to deploy".to_string(),
            ));
        }
        Ok(files)
    }
}

fn home_of(record: HomeRecord) -> Home {
    Home {
        id: record.target_id,
        name: record.target_name,
    }
}
