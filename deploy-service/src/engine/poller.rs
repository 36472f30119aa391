//! The poller's half of [`DeployEngine`]: claim due deployments under a lease, do one step each
//! (send to the provider, or read its state), commit the change, and schedule the next look.

use super::*;

impl DeployEngine {
    /// Follows due deployments until `shutdown` turns true, then gives back every lease.
    pub async fn run_poller(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.poller.max_concurrent));
        let mut steps = JoinSet::new();
        tracing::info!(replica = %self.replica, "deployment poller started");
        while !*shutdown.borrow() {
            while steps.try_join_next().is_some() {}
            let free = slots.available_permits().min(CLAIM_BATCH);
            let mut more = false;
            if free > 0 {
                let lease_until = now_ms() + self.poller.lease.as_millis() as i64;
                match self
                    .store
                    .claim_due(&self.replica, lease_until, free as i64)
                    .await
                {
                    Ok(claimed) => {
                        more = claimed.len() == free;
                        for record in claimed {
                            let Ok(slot) = slots.clone().try_acquire_owned() else {
                                break;
                            };
                            let engine = self.clone();
                            // A trace per step: its queries, project-service and provider calls.
                            let span = tracing::info_span!(
                                "deploy.step",
                                deployment_id = %record.id,
                                provider = record.provider.as_str(),
                                state = record.state.as_str(),
                            );
                            steps.spawn(
                                async move {
                                    engine.step(record).await;
                                    drop(slot);
                                }
                                .instrument(span),
                            );
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot claim deployments"),
                }
            }
            if more {
                continue;
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.poller.tick) => {}
                _ = shutdown.changed() => {}
            }
        }
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while steps.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            steps.abort_all();
        }
        match self.store.release_all(&self.replica).await {
            Ok(n) => tracing::info!(released = n, "deployment poller stopped"),
            Err(e) => tracing::error!(error = %e, "cannot release leases at shutdown"),
        }
    }

    /// One look at a claimed deployment, then its lease goes back with the next look scheduled.
    async fn step(&self, record: DeploymentRecord) {
        let mut polls = record.polls;
        let mut failures = record.failures;
        let deadline = self.deadline_ms(&record);
        let work = async {
            if now_ms() >= deadline {
                self.expire_if_due(&record.id).await?;
                return Ok(Next::Done);
            }
            match record.state {
                State::Queued | State::Uploading => self.start(&record).await,
                State::Building => {
                    polls += 1;
                    self.poll(&record).await
                }
                State::Ready | State::Error | State::Canceled => Ok(Next::Done),
            }
        };
        let next = {
            tokio::pin!(work);
            let renew_every = self.poller.lease / 3;
            loop {
                tokio::select! {
                    next = &mut work => break next,
                    () = tokio::time::sleep(renew_every) => {
                        let until = now_ms() + self.poller.lease.as_millis() as i64;
                        match self.store.extend_lease(&record.id, &self.replica, until).await {
                            Ok(true) => {}
                            Ok(false) => tracing::warn!(
                                id = %record.id,
                                "lease lost to another replica during a step (renewal came late)"
                            ),
                            Err(e) => tracing::warn!(id = %record.id, error = %e, "cannot extend lease"),
                        }
                    }
                }
            }
        };
        let delay = match next {
            Ok(Next::Done) => Duration::ZERO,
            Ok(Next::Poll) => {
                failures = 0;
                self.poll_interval(polls)
            }
            Ok(Next::Retry(reason)) => {
                failures += 1;
                let next = self.retry_delay(failures);
                if let retry::Next::GiveUp(_) = next {
                    self.give_up(&record.id, reason).await;
                }
                next.wait()
            }
            Err(e) => {
                tracing::error!(id = %record.id, error = format!("{e:#}"), "deployment step failed");
                failures += 1;
                // Unexpected failures (the database) are retried for as long as they last.
                self.retry_delay(failures).wait()
            }
        };
        // The next look comes no later than the deadline, which that look then enforces.
        let next_at = (now_ms() + delay.as_millis() as i64).min(deadline);
        if let Err(e) = self
            .store
            .release(&record.id, &self.replica, next_at, polls, failures)
            .await
        {
            tracing::error!(id = %record.id, error = %e, "cannot release lease");
        }
    }

    /// Marks a deployment that kept failing for a transient reason as `error`, from whatever
    /// active state the step left it in.
    async fn give_up(&self, id: &str, reason: String) {
        let result = async {
            let Some(current) = self.store.get_any(id).await? else {
                return Ok(false);
            };
            if current.state.is_final() {
                return Ok(false);
            }
            let change = Change::failed(reason);
            self.transition(id, current.state, State::Error, change)
                .await
        }
        .await;
        if let Err(e) = result {
            tracing::error!(id, error = %e, "cannot record failure");
        }
    }

    /// `min × 1.5^polls`, capped: quick first looks, then patience for long builds.
    fn poll_interval(&self, polls: i64) -> Duration {
        let factor = 1.5f64.powi(polls.clamp(0, 30) as i32 - 1).max(1.0);
        self.poller
            .min_interval
            .mul_f64(factor)
            .min(self.poller.max_interval)
    }

    /// The next look after `failures` transient failures in a row, or the end of the retries.
    fn retry_delay(&self, failures: i64) -> retry::Next {
        let failures = u32::try_from(failures.max(0)).unwrap_or(u32::MAX);
        self.step_retry.next(failures, Duration::ZERO, None)
    }

    /// Sends a queued (or interrupted) deployment to its provider, then reads its state once.
    async fn start(&self, record: &DeploymentRecord) -> Result<Next> {
        let id = record.id.as_str();
        if record.state == State::Queued {
            let message = match &record.rollback_of {
                Some(previous) => format!("rolling back to deployment {previous}"),
                None => format!("sending the project to {}", record.provider),
            };
            let change = Change::message(message);
            if !self
                .transition(id, State::Queued, State::Uploading, change)
                .await?
            {
                return Ok(Next::Done);
            }
        }
        let submitted = match self.submit(record).await {
            Ok(submitted) => submitted,
            Err(StepFailure::Fail(reason)) => {
                let change = Change::failed(reason);
                self.transition(id, State::Uploading, State::Error, change)
                    .await?;
                return Ok(Next::Done);
            }
            Err(StepFailure::Retry(reason)) => return Ok(Next::Retry(reason)),
            Err(StepFailure::Internal(e)) => return Err(e),
        };
        let change = Change {
            provider_deployment_id: Some(submitted.deployment_id.clone()),
            provider_site_id: submitted.site_id.clone(),
            url: submitted.url.clone(),
            clear_env: true,
            ..Change::message(format!(
                "{} accepted deployment {}",
                record.provider, submitted.deployment_id
            ))
        };
        if !self
            .transition(id, State::Uploading, State::Building, change)
            .await?
        {
            // Canceled while we were uploading: stop whatever the provider started.
            let canceled = match self.credentials(record).await {
                Ok(opened) => {
                    self.providers
                        .cancel(
                            record.provider,
                            &opened.credentials,
                            &submitted.deployment_id,
                        )
                        .await
                }
                Err(reason) => Err(ProviderError::Protocol {
                    provider: record.provider,
                    what: "cancel".to_string(),
                    message: reason,
                }),
            };
            if let Err(e) = canceled {
                tracing::warn!(id, error = %e, "cannot cancel at the provider after a cancel");
            }
            return Ok(Next::Done);
        }
        // Read the state at once: a provider that finishes instantly needs no second look.
        match self.store.get_any(id).await? {
            Some(record) => self.poll(&record).await,
            None => Ok(Next::Done),
        }
    }

    /// Reads the provider's state of a building deployment and records what changed.
    async fn poll(&self, record: &DeploymentRecord) -> Result<Next> {
        let id = record.id.as_str();
        let Some(provider_id) = record.provider_deployment_id.as_deref() else {
            let change = Change::failed("no provider deployment id was recorded");
            self.transition(id, State::Building, State::Error, change)
                .await?;
            return Ok(Next::Done);
        };
        let credentials = match self.credentials(record).await {
            Ok(opened) => opened.credentials,
            Err(reason) => {
                let change = Change::failed(reason);
                self.transition(id, State::Building, State::Error, change)
                    .await?;
                return Ok(Next::Done);
            }
        };
        let status = self
            .providers
            .status(record.provider, &credentials, provider_id, record.target)
            .await;
        let status = match status {
            Ok(status) => status,
            Err(e) if e.is_transient() => return Ok(Next::Retry(e.to_string())),
            Err(e) => {
                let change = Change::failed(e.to_string());
                self.transition(id, State::Building, State::Error, change)
                    .await?;
                return Ok(Next::Done);
            }
        };
        let provider = record.provider;
        let (to, change) = match status.state {
            RemoteState::InProgress(_) | RemoteState::Waiting(_) => {
                let raw = status.raw.as_str();
                let message = match &status.state {
                    RemoteState::Waiting(why) => format!("{provider}: {raw}: {why}"),
                    _ => format!("{provider}: {raw}"),
                };
                if record.provider_state.as_deref() != Some(raw)
                    && self
                        .store
                        .progress(id, State::Building, raw, status.url.as_deref(), &message)
                        .await?
                {
                    self.changed(id);
                }
                return Ok(Next::Poll);
            }
            RemoteState::Ready => {
                let url = status.url.clone().or_else(|| record.url.clone());
                let mut message = match &url {
                    Some(url) => format!("live at {url}"),
                    None => "live".to_string(),
                };
                if let Some(note) = &status.note {
                    message = format!("{message} ({provider}: {}: {note})", status.raw);
                }
                (
                    State::Ready,
                    Change {
                        url,
                        ..Change::message(message)
                    },
                )
            }
            RemoteState::Failed(reason) => {
                let text = format!("{provider} reported the deployment failed: {reason}");
                (State::Error, Change::failed(text))
            }
            RemoteState::Canceled => (
                State::Canceled,
                Change::message(format!("{provider} reports the deployment canceled")),
            ),
        };
        let change = Change {
            provider_state: Some(status.raw),
            ..change
        };
        self.transition(id, State::Building, to, change).await?;
        Ok(Next::Done)
    }
}
