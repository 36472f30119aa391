//! deploy-service's Prometheus metrics (on its metrics port, or the gateway's `/metrics` in the
//! all-in-one process): deployments entering each state, by provider.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use service_runtime::metrics::register;

use crate::model::{Provider, State};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    provider: &'static str,
    state: &'static str,
}

static DEPLOYMENTS: LazyLock<Family<StateLabels, Counter>> = LazyLock::new(|| {
    let family = Family::default();
    register(
        "deployments",
        "Deployments entering a state (queued on creation, then uploading, building, ready, error, canceled), by provider",
        family.clone(),
    );
    family
});

/// Registers the metrics, every provider's and state's count at zero, so that they show (and
/// rates over them start) before the first deployment.
pub fn init() {
    for provider in Provider::ALL {
        for state in State::ALL {
            let _ = DEPLOYMENTS.get_or_create(&StateLabels {
                provider: provider.as_str(),
                state: state.as_str(),
            });
        }
    }
}

/// Counts a deployment of `provider` entering `state`.
pub fn record_state(provider: Provider, state: State) {
    DEPLOYMENTS
        .get_or_create(&StateLabels {
            provider: provider.as_str(),
            state: state.as_str(),
        })
        .inc();
}
