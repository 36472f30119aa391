//! The domain of ai-service: answering a validated [`Task`] for a user through the prompt cache,
//! the budget check, the provider and the usage ledger. The gRPC layer only translates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;

use crate::cache::{CachedAnswer, PromptCache};
use crate::clock;
use crate::code::extract;
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::ledger::{BudgetHold, Outcome, Reservation, Totals, UsageEntry, UsageLedger};
use crate::provider::{Chunk, ProviderClient, TokenStream, Usage};
use crate::task::Task;

/// A model's answer and what it cost.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Raw model text.
    pub text: String,
    /// Model that wrote it.
    pub model: String,
    /// Tokens billed by this call (zero when cached).
    pub usage: Usage,
    /// Served from the prompt cache.
    pub cached: bool,
    /// Time spent waiting for the provider (for streams: until the first token).
    pub provider_ms: Option<u64>,
}

/// The post-processed result of a code-producing task.
#[derive(Debug, Clone)]
pub struct CodeAnswer {
    /// Code without fences.
    pub code: String,
    /// Prose around it.
    pub explanation: String,
}

impl Answer {
    /// Code and explanation for generate, fix and refactor; the inserted text for complete.
    pub fn code(&self, task: &Task) -> CodeAnswer {
        let Some(language) = task.language() else {
            return CodeAnswer {
                code: String::new(),
                explanation: self.text.trim().to_string(),
            };
        };
        if matches!(task, Task::Complete { .. }) && !self.text.contains("```") {
            // Whitespace at the cursor is part of the completion: keep the text as it is.
            return CodeAnswer {
                code: self.text.clone(),
                explanation: String::new(),
            };
        }
        let e = extract(&self.text, language);
        CodeAnswer {
            code: e.code,
            explanation: e.explanation,
        }
    }
}

/// One item of a streamed answer.
#[derive(Debug)]
pub enum StreamItem {
    /// More text.
    Delta(String),
    /// The complete answer (recorded and cached already).
    Done(Answer),
    /// The provider failed after the first token.
    Failed {
        /// What went wrong.
        error: Error,
        /// Tokens billed so far.
        usage: Usage,
        /// Text received so far.
        partial_text: String,
    },
}

/// A user's usage over one period.
#[derive(Debug, Clone, Default)]
pub struct PeriodUsage {
    /// Start of the period, Unix ms.
    pub start_ms: i64,
    /// Totals by operation name, sorted.
    pub by_operation: Vec<(String, Totals)>,
}

/// Usage for the current UTC day and month.
#[derive(Debug, Clone)]
pub struct UsageReport {
    /// Today.
    pub day: PeriodUsage,
    /// This month.
    pub month: PeriodUsage,
    /// Monthly budget per user.
    pub budget: Option<u64>,
}

/// Answers tasks.
#[derive(Debug)]
pub struct Assistant {
    provider: Option<ProviderClient>,
    ledger: UsageLedger,
    cache: PromptCache,
    limits: Limits,
    budget: Option<u64>,
    /// How long a call's budget hold counts if the call never settles it.
    hold_ttl: Duration,
}

/// Retry hint when the budget is held by calls in progress: they end within the provider's
/// timeouts, usually within seconds.
const HELD_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Margin added to the longest provider call for a hold's lifetime (ledger writes, a slow
/// client reading a stream).
const HOLD_MARGIN: Duration = Duration::from_secs(60);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn ms_i64(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Assistant {
    /// Puts the parts together.
    pub fn new(
        provider: Option<ProviderClient>,
        ledger: UsageLedger,
        cache: PromptCache,
        limits: Limits,
        budget: Option<u64>,
    ) -> Self {
        let hold_ttl = provider
            .as_ref()
            .map_or(HOLD_MARGIN, |p| p.longest_call() + HOLD_MARGIN);
        Self {
            provider,
            ledger,
            cache,
            limits,
            budget,
            hold_ttl,
        }
    }

    /// Input limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn provider(&self) -> Result<&ProviderClient> {
        self.provider.as_ref().ok_or(Error::NotConfigured)
    }

    fn cache_key(&self, user: &str, provider: &ProviderClient, task: &Task) -> Option<String> {
        task.cache_input().map(|input| {
            self.cache.key(
                user,
                provider.kind().as_str(),
                provider.model(),
                task.operation().as_str(),
                &input,
            )
        })
    }

    fn entry(
        &self,
        user: &str,
        task: &Task,
        answer: &Answer,
        outcome: Outcome,
        started: Instant,
    ) -> UsageEntry {
        UsageEntry {
            user_id: user.to_string(),
            operation: task.operation(),
            model: answer.model.clone(),
            usage: answer.usage,
            cached: answer.cached,
            outcome,
            latency_ms: ms_i64(started.elapsed()),
            provider_ms: answer
                .provider_ms
                .map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
            project_id: task.project_id().map(str::to_string),
        }
    }

    async fn cached(&self, key: Option<&str>) -> Option<Answer> {
        let hit = self.cache.get(key?).await?;
        Some(Answer {
            text: hit.text,
            model: hit.model,
            usage: Usage::default(),
            cached: true,
            provider_ms: None,
        })
    }

    /// Holds the most `task` can cost against `user`'s monthly budget, or refuses the call.
    async fn reserve(&self, user: &str, task: &Task) -> Result<BudgetHold> {
        let Some(budget) = self.budget else {
            return Ok(BudgetHold::none(&self.ledger));
        };
        let needed = task.model_request().max_billable_tokens();
        let now = clock::now_ms();
        let reservation = Reservation {
            user_id: user,
            tokens: needed,
            budget,
            since_ms: clock::month_start(now),
            now_ms: now,
            ttl: self.hold_ttl,
        };
        let refusal = match self.ledger.reserve(&reservation).await? {
            Ok(id) => return Ok(BudgetHold::new(&self.ledger, id)),
            Err(refusal) => refusal,
        };
        let reset = clock::next_month_start(now);
        // When only calls in progress stand in the way, the budget comes back as they end.
        let retry_after = if refusal.spent.saturating_add(needed) <= budget {
            HELD_RETRY_AFTER
        } else {
            Duration::from_millis(u64::try_from(reset - now).unwrap_or(0))
        };
        Err(Error::BudgetExhausted {
            budget,
            used: refusal.spent,
            held: refusal.held,
            needed,
            resets_at: clock::rfc3339(reset),
            retry_after,
        })
    }

    /// Answers `task` for `user` in one piece.
    pub async fn answer(&self, user: &str, task: &Task) -> Result<Answer> {
        let started = Instant::now();
        let provider = self.provider()?;
        let key = self.cache_key(user, provider, task);
        if let Some(answer) = self.cached(key.as_deref()).await {
            self.ledger
                .record(&self.entry(user, task, &answer, Outcome::Ok, started))
                .await?;
            return Ok(answer);
        }
        let hold = self.reserve(user, task).await?;
        let called = Instant::now();
        let completion = match provider.complete(&task.model_request()).await {
            Ok(completion) => completion,
            Err(error) => {
                hold.release().await;
                return Err(error);
            }
        };
        let answer = Answer {
            text: completion.text,
            model: completion.model,
            usage: completion.usage,
            cached: false,
            provider_ms: Some(ms(called.elapsed())),
        };
        hold.settle(&self.entry(user, task, &answer, Outcome::Ok, started))
            .await?;
        if let Some(key) = key {
            let cached = CachedAnswer {
                text: answer.text.clone(),
                model: answer.model.clone(),
            };
            self.cache.put(&key, &cached).await;
        }
        Ok(answer)
    }

    /// Answers `task` for `user` as a stream. Failures up to the first token come back as the
    /// error; the returned stream owns the provider connection, so dropping it cancels the call.
    /// The second value is the provider time to first token (`None` on a cache hit).
    pub async fn stream(
        self: &Arc<Self>,
        user: &str,
        task: Task,
    ) -> Result<(impl Stream<Item = StreamItem> + Send + 'static, Option<u64>)> {
        let started = Instant::now();
        let provider = self.provider()?;
        let key = self.cache_key(user, provider, &task);
        let source = match self.cached(key.as_deref()).await {
            Some(answer) => {
                self.ledger
                    .record(&self.entry(user, &task, &answer, Outcome::Ok, started))
                    .await?;
                Source::Cached(answer)
            }
            None => {
                let hold = self.reserve(user, &task).await?;
                let called = Instant::now();
                match provider.stream(&task.model_request()).await {
                    Ok(tokens) => Source::Live(tokens, ms(called.elapsed()), hold),
                    Err(error) => {
                        hold.release().await;
                        return Err(error);
                    }
                }
            }
        };
        let first_token_ms = match &source {
            Source::Cached(_) => None,
            Source::Live(_, first_ms, _) => Some(*first_ms),
        };
        let this = Arc::clone(self);
        let user = user.to_string();
        let items = async_stream::stream! {
            match source {
                Source::Cached(answer) => {
                    yield StreamItem::Delta(answer.text.clone());
                    yield StreamItem::Done(answer);
                }
                Source::Live(tokens, first_ms, hold) => {
                    let mut run = LiveStream {
                        assistant: this,
                        hold: Some(hold),
                        user,
                        task,
                        key,
                        started,
                        first_ms,
                        text: String::new(),
                        tokens,
                        armed: true,
                    };
                    loop {
                        match run.tokens.next().await {
                            Some(Ok(Chunk::Delta(text))) => {
                                run.text.push_str(&text);
                                yield StreamItem::Delta(text);
                            }
                            Some(Ok(Chunk::Finished)) | None => {
                                yield run.finish().await;
                                break;
                            }
                            Some(Err(error)) => {
                                yield run.fail(error).await;
                                break;
                            }
                        }
                    }
                }
            }
        };
        Ok((items, first_token_ms))
    }

    /// The user's usage for the current UTC day and month.
    pub async fn usage(&self, user: &str) -> Result<UsageReport> {
        let now = clock::now_ms();
        let day_start = clock::day_start(now);
        let month_start = clock::month_start(now);
        Ok(UsageReport {
            day: PeriodUsage {
                start_ms: day_start,
                by_operation: self.ledger.totals_since(user, day_start).await?,
            },
            month: PeriodUsage {
                start_ms: month_start,
                by_operation: self.ledger.totals_since(user, month_start).await?,
            },
            budget: self.budget,
        })
    }
}

/// Where a streamed answer comes from.
enum Source {
    Cached(Answer),
    /// The provider stream, its time to first token and the budget it holds.
    Live(TokenStream, u64, BudgetHold),
}

/// A provider stream in flight. If it is dropped before it ends (the client went away), the
/// usage billed so far is still recorded, as `cancelled`.
struct LiveStream {
    assistant: Arc<Assistant>,
    /// Settled when the stream ends; `None` once it was.
    hold: Option<BudgetHold>,
    user: String,
    task: Task,
    key: Option<String>,
    started: Instant,
    first_ms: u64,
    text: String,
    tokens: TokenStream,
    armed: bool,
}

impl LiveStream {
    fn answer(&self) -> Answer {
        Answer {
            text: self.text.clone(),
            model: self.tokens.model(),
            usage: self.tokens.usage(),
            cached: false,
            provider_ms: Some(self.first_ms),
        }
    }

    async fn finish(&mut self) -> StreamItem {
        self.armed = false;
        let mut answer = self.answer();
        answer.provider_ms = Some(ms(self.started.elapsed()));
        let a = &self.assistant;
        let entry = a.entry(&self.user, &self.task, &answer, Outcome::Ok, self.started);
        if let Some(hold) = self.hold.take()
            && let Err(e) = hold.settle(&entry).await
        {
            tracing::error!(error = format!("{e:#}"), "cannot record AI usage");
        }
        if let Some(key) = &self.key {
            let cached = CachedAnswer {
                text: answer.text.clone(),
                model: answer.model.clone(),
            };
            a.cache.put(key, &cached).await;
        }
        StreamItem::Done(answer)
    }

    async fn fail(&mut self, error: Error) -> StreamItem {
        self.armed = false;
        let answer = self.answer();
        tracing::warn!(error = %error, "AI provider stream failed after its first token");
        let a = &self.assistant;
        let entry = a.entry(
            &self.user,
            &self.task,
            &answer,
            Outcome::Failed,
            self.started,
        );
        if let Some(hold) = self.hold.take()
            && let Err(e) = hold.settle(&entry).await
        {
            tracing::error!(error = format!("{e:#}"), "cannot record AI usage");
        }
        StreamItem::Failed {
            error,
            usage: answer.usage,
            partial_text: answer.text,
        }
    }
}

impl Drop for LiveStream {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let answer = self.answer();
        let entry = self.assistant.entry(
            &self.user,
            &self.task,
            &answer,
            Outcome::Cancelled,
            self.started,
        );
        tracing::info!(
            operation = self.task.operation().as_str(),
            "client went away mid-stream; provider request cancelled"
        );
        let Some(hold) = self.hold.take() else {
            return;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = hold.settle(&entry).await {
                    tracing::error!(error = format!("{e:#}"), "cannot record AI usage");
                }
            });
        }
    }
}
