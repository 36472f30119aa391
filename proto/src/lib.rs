//! gRPC contracts of AutoCrea: generated messages, clients and servers for every service.
//!
//! The `.proto` files under `proto/` are the source of truth; each lives in package
//! `autocrea.<service>.v1` and is re-exported here as `<service>::v1`.

#![allow(missing_docs, clippy::all)]

/// project-service: projects and their files.
pub mod project {
    /// Version 1 of the project contract.
    pub mod v1 {
        tonic::include_proto!("autocrea.project.v1");
    }
}

/// ai-service: code generation and chat over AI providers.
pub mod ai {
    /// Version 1 of the AI contract.
    pub mod v1 {
        tonic::include_proto!("autocrea.ai.v1");
    }
}

/// deploy-service: deployments to Vercel, Netlify and Railway.
pub mod deploy {
    /// Version 1 of the deploy contract.
    pub mod v1 {
        tonic::include_proto!("autocrea.deploy.v1");
    }
}

/// sandbox-service: running untrusted code in containers.
pub mod sandbox {
    /// Version 1 of the sandbox contract.
    pub mod v1 {
        tonic::include_proto!("autocrea.sandbox.v1");
    }
}
