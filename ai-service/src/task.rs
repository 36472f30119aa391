//! The six operations as validated tasks: each knows its limits, system prompt, output cap, how
//! to phrase the request for the model and whether its answer may be cached.

use autocrea_proto::ai::v1 as pb;
use serde_json::json;
use service_runtime::invalid::Violations;

use crate::code::fence_for;
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::language::Language;
use crate::provider::{Message, ModelRequest, Role};

/// What the caller asked for; each RPC is one of these (streams count as their unary kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Code from a prompt.
    Generate,
    /// Explanation of code.
    Explain,
    /// Fixed code and what was wrong.
    Fix,
    /// Refactored code.
    Refactor,
    /// Editor completion at a cursor.
    Complete,
    /// Conversation.
    Chat,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Self; 6] = [
        Self::Generate,
        Self::Explain,
        Self::Fix,
        Self::Refactor,
        Self::Complete,
        Self::Chat,
    ];

    /// Name in the usage ledger and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generate => "generate",
            Self::Explain => "explain",
            Self::Fix => "fix",
            Self::Refactor => "refactor",
            Self::Complete => "complete",
            Self::Chat => "chat",
        }
    }

    /// Output token cap: completion is kept short for editor latency.
    fn max_tokens(self) -> u32 {
        match self {
            Self::Generate | Self::Fix | Self::Refactor => 4096,
            Self::Explain | Self::Chat => 2048,
            Self::Complete => 256,
        }
    }

    fn system_prompt(self) -> &'static str {
        match self {
            Self::Generate => {
                "You are an expert software engineer. Write correct, idiomatic, complete code for \
                 the request. Reply with exactly one fenced code block in the requested language, \
                 then at most three sentences explaining it. No other code blocks."
            }
            Self::Explain => {
                "You are an expert software engineer and patient teacher. Explain what the given \
                 code does, how it works and any pitfalls, concisely, in Markdown."
            }
            Self::Fix => {
                "You are an expert debugger. Given code and the error it produces, first explain \
                 in a few sentences what was wrong, then give the whole corrected code in exactly \
                 one fenced code block in the same language."
            }
            Self::Refactor => {
                "You are an expert software engineer. Refactor the given code for readability and \
                 maintainability without changing its behaviour, following any stated goals. Give \
                 the whole refactored code in exactly one fenced code block in the same language, \
                 then a short list of what changed."
            }
            Self::Complete => {
                "You are a code completion engine. Reply with only the text to insert at <CURSOR>: \
                 no explanation, no Markdown fences, no repetition of the surrounding code."
            }
            Self::Chat => {
                "You are AutoCrea's coding assistant. Answer questions about code clearly and \
                 correctly; put code in fenced blocks tagged with their language."
            }
        }
    }
}

/// A validated request.
#[derive(Debug, Clone)]
pub enum Task {
    /// See [`Operation::Generate`].
    Generate {
        /// What to build.
        prompt: String,
        /// Target language.
        language: Language,
        /// Optional framework.
        framework: Option<String>,
    },
    /// See [`Operation::Explain`].
    Explain {
        /// Code to explain.
        code: String,
        /// Its language.
        language: Language,
    },
    /// See [`Operation::Fix`].
    Fix {
        /// Broken code.
        code: String,
        /// The error it gives.
        error: String,
        /// Its language.
        language: Language,
    },
    /// See [`Operation::Refactor`].
    Refactor {
        /// Code to refactor.
        code: String,
        /// Its language.
        language: Language,
        /// Optional goals.
        goals: Option<String>,
    },
    /// See [`Operation::Complete`].
    Complete {
        /// Text before the cursor.
        prefix: String,
        /// Text after the cursor.
        suffix: Option<String>,
        /// Its language.
        language: Language,
    },
    /// See [`Operation::Chat`].
    Chat {
        /// The conversation.
        messages: Vec<Message>,
        /// Project it is about.
        project_id: Option<String>,
    },
}

/// Collects every violation of a request, so that one answer lists all there is to fix.
struct Checker<'a> {
    limits: &'a Limits,
    violations: Violations,
}

impl<'a> Checker<'a> {
    fn new(limits: &'a Limits) -> Self {
        Self {
            limits,
            violations: Violations::new(),
        }
    }

    fn violation(&mut self, field: &str, description: String) {
        self.violations.push(field, description);
    }

    /// Normalized `value` (CRLF to LF), checked for presence and length. The length is that of
    /// the text as sent, which is what the API's schema (`maxLength`) and the client can check.
    fn text(&mut self, field: &str, value: &str, max: usize) -> String {
        let chars = value.chars().count();
        let value = value.replace("\r\n", "\n");
        if value.trim().is_empty() {
            self.violation(field, format!("{field} must not be empty"));
        } else if chars > max {
            self.violation(
                field,
                format!("{field} is {chars} characters long; the limit is {max}"),
            );
        }
        value
    }

    fn optional_text(&mut self, field: &str, value: Option<&str>, max: usize) -> Option<String> {
        value
            .filter(|v| !v.trim().is_empty())
            .map(|v| self.text(field, v, max))
    }

    fn language(&mut self, field: &str, value: &str) -> Language {
        match Language::parse(value) {
            Some(language) => language,
            None => {
                let description = if value.trim().is_empty() {
                    format!("language is required; one of: {}", Language::supported())
                } else {
                    format!(
                        "language {value:?} is not supported; use one of: {}",
                        Language::supported()
                    )
                };
                self.violation(field, description);
                // Placeholder so checking can go on; the violation makes the request fail.
                Language::parse("python").expect("python is supported")
            }
        }
    }

    fn finish<T>(self, value: T) -> Result<T> {
        self.violations.into_result(value).map_err(Error::Invalid)
    }
}

impl Task {
    /// Validates a generate request.
    pub fn generate(r: &pb::GenerateRequest, limits: &Limits) -> Result<Self> {
        let mut c = Checker::new(limits);
        let prompt = c.text("prompt", &r.prompt, limits.max_prompt_chars);
        let language = c.language("language", &r.language);
        let framework = c
            .optional_text(
                "framework",
                r.framework.as_deref(),
                c.limits.max_framework_chars,
            )
            .map(|f| f.trim().to_string());
        c.finish(Self::Generate {
            prompt,
            language,
            framework,
        })
    }

    /// Validates an explain request.
    pub fn explain(r: &pb::ExplainRequest, limits: &Limits) -> Result<Self> {
        let mut c = Checker::new(limits);
        let code = c.text("code", &r.code, limits.max_code_chars);
        let language = c.language("language", &r.language);
        c.finish(Self::Explain { code, language })
    }

    /// Validates a fix request.
    pub fn fix(r: &pb::FixRequest, limits: &Limits) -> Result<Self> {
        let mut c = Checker::new(limits);
        let code = c.text("code", &r.code, limits.max_code_chars);
        let error = c.text("error", &r.error, limits.max_error_chars);
        let language = c.language("language", &r.language);
        c.finish(Self::Fix {
            code,
            error,
            language,
        })
    }

    /// Validates a refactor request.
    pub fn refactor(r: &pb::RefactorRequest, limits: &Limits) -> Result<Self> {
        let mut c = Checker::new(limits);
        let code = c.text("code", &r.code, limits.max_code_chars);
        let language = c.language("language", &r.language);
        let goals = c.optional_text("goals", r.goals.as_deref(), limits.max_goals_chars);
        c.finish(Self::Refactor {
            code,
            language,
            goals,
        })
    }

    /// Validates a complete request.
    pub fn complete(r: &pb::CompleteRequest, limits: &Limits) -> Result<Self> {
        let mut c = Checker::new(limits);
        let max = limits.max_completion_context_chars;
        let prefix = c.text("prefix", &r.prefix, max);
        let suffix = r.suffix.as_deref().filter(|s| !s.is_empty()).map(|s| {
            let n = s.chars().count();
            let s = s.replace("\r\n", "\n");
            if n > max {
                c.violation(
                    "suffix",
                    format!("suffix is {n} characters long; the limit is {max}"),
                );
            }
            s
        });
        let language = c.language("language", &r.language);
        c.finish(Self::Complete {
            prefix,
            suffix,
            language,
        })
    }

    /// Validates a chat request.
    pub fn chat(r: &pb::ChatRequest, limits: &Limits) -> Result<Self> {
        let mut c = Checker::new(limits);
        let count = r.messages.len();
        if count == 0 {
            c.violation("messages", "messages must hold at least one message".into());
        } else if count > limits.max_chat_messages {
            c.violation(
                "messages",
                format!(
                    "{count} messages; the limit is {}: drop the oldest ones",
                    limits.max_chat_messages
                ),
            );
        }
        let mut messages = Vec::with_capacity(count);
        let mut total = 0;
        for (i, m) in r.messages.iter().enumerate() {
            let role = match m.role.trim().to_ascii_lowercase().as_str() {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    c.violation(
                        &format!("messages[{i}].role"),
                        format!("role {other:?} is not allowed; use \"user\" or \"assistant\""),
                    );
                    Role::User
                }
            };
            let field = format!("messages[{i}].content");
            let content = c.text(&field, &m.content, limits.max_chat_message_chars);
            total += content.chars().count();
            messages.push(Message { role, content });
        }
        if total > limits.max_chat_total_chars {
            c.violation(
                "messages",
                format!(
                    "the messages hold {total} characters in all; the limit is {}",
                    limits.max_chat_total_chars
                ),
            );
        }
        if messages.last().is_some_and(|m| m.role != Role::User) {
            c.violation(
                &format!("messages[{}].role", count - 1),
                "the last message must come from the user".into(),
            );
        }
        let project_id = r
            .project_id
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string);
        if project_id.as_ref().is_some_and(|p| p.chars().count() > 128) {
            c.violation(
                "projectId",
                "projectId is longer than 128 characters".into(),
            );
        }
        c.finish(Self::Chat {
            messages,
            project_id,
        })
    }

    /// Which operation this is.
    pub fn operation(&self) -> Operation {
        match self {
            Self::Generate { .. } => Operation::Generate,
            Self::Explain { .. } => Operation::Explain,
            Self::Fix { .. } => Operation::Fix,
            Self::Refactor { .. } => Operation::Refactor,
            Self::Complete { .. } => Operation::Complete,
            Self::Chat { .. } => Operation::Chat,
        }
    }

    /// The language asked for (none for chat).
    pub fn language(&self) -> Option<Language> {
        match self {
            Self::Generate { language, .. }
            | Self::Explain { language, .. }
            | Self::Fix { language, .. }
            | Self::Refactor { language, .. }
            | Self::Complete { language, .. } => Some(*language),
            Self::Chat { .. } => None,
        }
    }

    /// The project a chat is about.
    pub fn project_id(&self) -> Option<&str> {
        match self {
            Self::Chat { project_id, .. } => project_id.as_deref(),
            _ => None,
        }
    }

    /// The normalized input that identifies this request in the prompt cache, or `None` when
    /// its answer must not be cached (chat: personal context, and a repeated question usually
    /// wants a fresh answer).
    pub fn cache_input(&self) -> Option<String> {
        let v = match self {
            Self::Generate {
                prompt,
                language,
                framework,
            } => json!([
                prompt.trim(),
                language.name(),
                framework.as_deref().map(str::to_ascii_lowercase)
            ]),
            Self::Explain { code, language } => json!([code.trim_end(), language.name()]),
            Self::Fix {
                code,
                error,
                language,
            } => json!([code.trim_end(), error.trim(), language.name()]),
            Self::Refactor {
                code,
                language,
                goals,
            } => json!([
                code.trim_end(),
                language.name(),
                goals.as_deref().map(str::trim)
            ]),
            // Whitespace at the cursor matters for completion: no trimming.
            Self::Complete {
                prefix,
                suffix,
                language,
            } => json!([prefix, suffix, language.name()]),
            Self::Chat { .. } => return None,
        };
        Some(v.to_string())
    }

    /// The provider request for this task.
    pub fn model_request(&self) -> ModelRequest {
        let op = self.operation();
        let user = |content: String| {
            vec![Message {
                role: Role::User,
                content,
            }]
        };
        let block = |code: &str, tag: &str| {
            let fence = fence_for(code);
            format!("{fence}{tag}\n{code}\n{fence}")
        };
        let (messages, temperature) = match self {
            Self::Generate {
                prompt,
                language,
                framework,
            } => {
                let with = framework
                    .as_deref()
                    .map(|f| format!(" using {f}"))
                    .unwrap_or_default();
                (
                    user(format!(
                        "Language: {}{with}\n\nRequest:\n{prompt}",
                        language.name()
                    )),
                    None,
                )
            }
            Self::Explain { code, language } => (
                user(format!(
                    "Explain this {} code:\n\n{}",
                    language.name(),
                    block(code, language.name())
                )),
                None,
            ),
            Self::Fix {
                code,
                error,
                language,
            } => (
                user(format!(
                    "This {} code fails.\n\nCode:\n{}\n\nError:\n{}",
                    language.name(),
                    block(code, language.name()),
                    block(error, "text")
                )),
                None,
            ),
            Self::Refactor {
                code,
                language,
                goals,
            } => {
                let goals = goals
                    .as_deref()
                    .map(|g| format!("\n\nGoals: {g}"))
                    .unwrap_or_default();
                (
                    user(format!(
                        "Refactor this {} code.{goals}\n\n{}",
                        language.name(),
                        block(code, language.name())
                    )),
                    None,
                )
            }
            Self::Complete {
                prefix,
                suffix,
                language,
            } => (
                user(format!(
                    "Language: {}\n\n{prefix}<CURSOR>{}",
                    language.name(),
                    suffix.as_deref().unwrap_or_default()
                )),
                // Completions should be the most likely text, not creative.
                Some(0.2),
            ),
            Self::Chat { messages, .. } => (messages.clone(), None),
        };
        ModelRequest {
            system: op.system_prompt().to_string(),
            messages,
            max_tokens: op.max_tokens(),
            temperature,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_violation_is_reported_with_camel_case_fields() {
        let request = pb::ChatRequest {
            messages: vec![pb::ChatMessage {
                role: "system".into(),
                content: " ".into(),
            }],
            project_id: Some("x".repeat(200)),
        };
        let Err(Error::Invalid(v)) = Task::chat(&request, &Limits::default()) else {
            panic!("expected invalid");
        };
        let fields: Vec<_> = v.0.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            ["messages[0].role", "messages[0].content", "projectId"]
        );
    }
}
