//! The route groups of the API, each with its own rate-limit budget (and scope rules in
//! `crate::identity`).

/// Route groups, each with its own budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteGroup {
    /// Projects and files.
    Api,
    /// AI operations.
    Ai,
    /// Deployments.
    Deploy,
    /// Sandbox runs.
    Sandbox,
    /// API key management.
    Auth,
    /// Users' provider connections.
    Integrations,
}

impl RouteGroup {
    /// The group's name in headers, keys and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Ai => "ai",
            Self::Deploy => "deploy",
            Self::Sandbox => "sandbox",
            Self::Auth => "auth",
            Self::Integrations => "integrations",
        }
    }

    /// Every group.
    pub const ALL: [RouteGroup; 6] = [
        Self::Api,
        Self::Ai,
        Self::Deploy,
        Self::Sandbox,
        Self::Auth,
        Self::Integrations,
    ];
}
