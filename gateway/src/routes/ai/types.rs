//! What `/api/ai` takes and answers. Every answer carries the same [`AnswerUsage`] (one
//! `Usage` message in `ai.proto`), flattened into its JSON.

use super::*;

// Request bodies. String fields default to empty so that a missing field reaches ai-service's
// validation and comes back as a per-field error, like any other invalid value. Their schemas
// state ai-service's limits (`ai_service::config::Limits` defaults).

/// The names and aliases of the languages ai-service takes (`ai.proto` lists them; any case).
#[rustfmt::skip]
pub const LANGUAGES: &[&str] = &[
    "python", "py", "python3", "javascript", "js", "jsx", "node", "nodejs", "typescript", "ts",
    "tsx", "rust", "rs", "go", "golang", "java", "kotlin", "kt", "swift", "c", "h", "cpp", "c++",
    "cxx", "cc", "hpp", "csharp", "c#", "cs", "ruby", "rb", "php", "html", "htm", "css", "sql",
    "bash", "sh", "shell", "zsh", "json", "yaml", "yml",
];

/// A language ai-service takes: a name or an alias of one (also in upper case).
pub struct AiLanguage;

impl utoipa::PartialSchema for AiLanguage {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        schema::one_of(LANGUAGES)
            .description(Some(
                "A language ai-service takes: a name or an alias of one (also in upper case)",
            ))
            .into()
    }
}

impl ToSchema for AiLanguage {}

/// Who wrote a chat message.
#[derive(ToSchema)]
#[allow(dead_code)] // Only its schema is used: `ChatMessage.role` is checked by ai-service.
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// The person.
    User,
    /// The model.
    Assistant,
}

/// Body of `POST /api/ai/generate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateBody {
    /// What to build; at most 10,000 characters, not blank.
    #[serde(default)]
    #[schema(required = true, inline, value_type = schema::NonBlankText<10_000>)]
    pub prompt: String,
    /// Target language, e.g. `python`, `ts`, `rust`.
    #[serde(default)]
    #[schema(required = true, value_type = AiLanguage)]
    pub language: String,
    /// Framework or library, e.g. `react`; at most 100 characters.
    #[schema(max_length = 100)]
    pub framework: Option<String>,
}

/// What an answer cost and who gave it: the same fields in every AI answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnswerUsage {
    /// `inputTokens + outputTokens`.
    pub tokens_used: u64,
    /// Prompt tokens billed by the provider.
    pub input_tokens: u64,
    /// Tokens the model wrote.
    pub output_tokens: u64,
    /// The model that answered.
    pub model: String,
    /// True when answered from the prompt cache (no tokens spent); conversations never are.
    pub cached: bool,
}

/// Generated code.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenerateResult {
    /// The code, without Markdown fences.
    pub code: String,
    /// Canonical language name.
    pub language: String,
    /// What the model said next to the code (may be empty).
    pub explanation: String,
    /// Tokens and model of the answer.
    #[serde(flatten)]
    pub usage: AnswerUsage,
}

/// Body of `POST /api/ai/explain`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExplainBody {
    /// The code; at most 60,000 characters, not blank.
    #[serde(default)]
    #[schema(required = true, inline, value_type = schema::NonBlankText<60_000>)]
    pub code: String,
    /// Its language.
    #[serde(default)]
    #[schema(required = true, value_type = AiLanguage)]
    pub language: String,
}

/// An explanation of code.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExplainResult {
    /// What the code does (Markdown).
    pub explanation: String,
    /// Canonical language name.
    pub language: String,
    /// Tokens and model of the answer.
    #[serde(flatten)]
    pub usage: AnswerUsage,
}

/// Body of `POST /api/ai/fix`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixBody {
    /// The failing code; at most 60,000 characters, not blank.
    #[serde(default)]
    #[schema(required = true, inline, value_type = schema::NonBlankText<60_000>)]
    pub code: String,
    /// The error message or wrong behaviour; at most 10,000 characters, not blank.
    #[serde(default)]
    #[schema(required = true, inline, value_type = schema::NonBlankText<10_000>)]
    pub error: String,
    /// Its language.
    #[serde(default)]
    #[schema(required = true, value_type = AiLanguage)]
    pub language: String,
}

/// Fixed code.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FixResult {
    /// The whole fixed code, without Markdown fences.
    pub code: String,
    /// What was wrong and what changed.
    pub explanation: String,
    /// Canonical language name.
    pub language: String,
    /// Tokens and model of the answer.
    #[serde(flatten)]
    pub usage: AnswerUsage,
}

/// Body of `POST /api/ai/refactor`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefactorBody {
    /// The code; at most 60,000 characters, not blank.
    #[serde(default)]
    #[schema(required = true, inline, value_type = schema::NonBlankText<60_000>)]
    pub code: String,
    /// Its language.
    #[serde(default)]
    #[schema(required = true, value_type = AiLanguage)]
    pub language: String,
    /// Goals, e.g. "extract functions, add types"; at most 2,000 characters.
    #[schema(max_length = 2_000)]
    pub goals: Option<String>,
}

/// Refactored code.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefactorResult {
    /// The refactored code, without Markdown fences.
    pub code: String,
    /// What changed and why.
    pub explanation: String,
    /// Canonical language name.
    pub language: String,
    /// Tokens and model of the answer.
    #[serde(flatten)]
    pub usage: AnswerUsage,
}

/// Body of `POST /api/ai/complete`: editor auto-completion at a cursor.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompleteBody {
    /// Code before the cursor; 1 to 20,000 characters, not blank.
    #[serde(default)]
    #[schema(required = true, inline, value_type = schema::NonBlankText<20_000>)]
    pub prefix: String,
    /// Code after the cursor; at most 20,000 characters.
    #[schema(max_length = 20_000)]
    pub suffix: Option<String>,
    /// The language.
    #[serde(default)]
    #[schema(required = true, value_type = AiLanguage)]
    pub language: String,
}

/// A completion.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompleteResult {
    /// Text to insert at the cursor.
    pub completion: String,
    /// Canonical language name.
    pub language: String,
    /// Tokens and model of the answer.
    #[serde(flatten)]
    pub usage: AnswerUsage,
}

/// One message of a conversation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatMessage {
    /// `user` or `assistant`; the last message of a conversation is the user's.
    #[serde(default)]
    #[schema(required = true, value_type = ChatRole)]
    pub role: String,
    /// At most 20,000 characters, not blank (100,000 for the whole conversation).
    #[serde(default)]
    #[schema(required = true, inline, value_type = schema::NonBlankText<20_000>)]
    pub content: String,
}

/// Body of `POST /api/ai/chat`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatBody {
    /// 1 to 50 messages, oldest first, ending with a `user` message.
    #[serde(default)]
    #[schema(required = true, min_items = 1, max_items = 50)]
    pub messages: Vec<ChatMessage>,
    /// The project the conversation is about (recorded with the usage).
    #[schema(schema_with = schema::chat_project_id)]
    pub project_id: Option<String>,
}

/// The assistant's reply.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatResult {
    /// The reply, as Markdown.
    pub message: String,
    /// Tokens and model of the answer.
    #[serde(flatten)]
    pub usage: AnswerUsage,
}

/// Token usage of one operation in a period.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationUsage {
    /// `generate`, `explain`, `fix`, `refactor`, `complete` or `chat` (streams included).
    pub operation: String,
    /// Calls answered.
    pub requests: u64,
    /// Of which answered from the prompt cache.
    pub cached_requests: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// `inputTokens + outputTokens`.
    pub tokens_used: u64,
}

/// Token usage in a period (the current UTC day or month).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsagePeriod {
    /// RFC 3339 start of the period.
    pub start: String,
    /// Calls answered.
    pub requests: u64,
    /// Of which answered from the prompt cache.
    pub cached_requests: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// `inputTokens + outputTokens`.
    pub tokens_used: u64,
    /// By operation, sorted by name.
    pub by_operation: Vec<OperationUsage>,
}

/// The caller's token usage.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// The current UTC day.
    pub day: UsagePeriod,
    /// The current UTC month.
    pub month: UsagePeriod,
    /// Tokens allowed per user per month, when a budget is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_token_budget: Option<u64>,
    /// Tokens left this month, when a budget is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_tokens_remaining: Option<u64>,
}

/// Data of a streamed `delta` event: the next piece of model text (Markdown included).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeltaEvent {
    /// The text.
    pub text: String,
}

/// Data of a streamed `error` event: the stream failed after its first token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamErrorEvent {
    /// `overloaded`, `timeout`, `protocol`, `interrupted`, ...
    pub kind: String,
    /// What happened.
    pub message: String,
    /// Tokens billed so far.
    pub tokens_used: u64,
    /// Prompt tokens billed so far.
    pub input_tokens: u64,
    /// Output tokens billed so far (0 when the provider had not reported them yet).
    pub output_tokens: u64,
    /// The text received before the failure.
    pub partial_text: String,
}
