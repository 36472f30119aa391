//! The Docker engine as the sandbox uses it: hardened single-use containers whose main process is
//! the runtime image's supervisor, attached to before they start; their exit, cgroup counters,
//! and removal of everything labelled with this instance. Every engine call of a run is a
//! `docker.*` span, a child of the run's span.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::{
    ContainerCreateBody, ExecConfig, HostConfig, HostConfigLogConfig, ResourcesUlimits,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

use crate::config::Config;
use crate::engine_endpoint::EngineEndpoint;
use crate::error::{Error, Result};
use crate::language::Language;
use crate::runner::RunnerContainer;

/// Label on every container the sandbox creates.
pub const LABEL: &str = "org.autocrea.sandbox";
/// Label naming the service instance that owns a container.
pub const OWNER_LABEL: &str = "org.autocrea.sandbox.owner";
/// Image label naming the version of the supervisor protocol the image speaks.
pub const PROTOCOL_LABEL: &str = "org.autocrea.sandbox.protocol";
/// The protocol version this service speaks (`deploy/sandbox/supervisor.py`).
pub const PROTOCOL_VERSION: &str = "2";
/// Work directory of the program, a tmpfs.
pub const WORK_DIR: &str = "/work";
/// The image's supervisor, main process of every container.
const SUPERVISOR: &str = "/opt/autocrea/supervisor.py";
/// Fixed script of the image that prints the cgroup counters.
const STATS_SCRIPT: &str = "/opt/autocrea/stats";
/// Longest time a stats exec may take before the run reports no counters.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// Output of an attached container or exec, demultiplexed.
pub type AttachOutput =
    std::pin::Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;
/// Stdin of an attached container.
pub type AttachInput = std::pin::Pin<Box<dyn AsyncWrite + Send>>;

/// cgroup counters of one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// CPU time of every process of the container.
    pub cpu: Option<Duration>,
    /// Highest memory use (cgroup peak).
    pub memory_peak_bytes: Option<i64>,
    /// Processes the OOM killer killed.
    pub oom_kills: u64,
}

/// A handle on the Docker engine, configured with the sandbox's image, limits and labels.
#[derive(Debug, Clone)]
pub struct ContainerEngine {
    docker: Docker,
    config: std::sync::Arc<Config>,
}

impl ContainerEngine {
    /// A client for the engine named by the configuration (no I/O yet).
    pub fn connect(config: std::sync::Arc<Config>) -> std::result::Result<Self, String> {
        let docker = EngineEndpoint::parse(
            config.docker_host.as_deref(),
            config.docker_tls_certs.as_ref(),
        )?
        .connect()
        .map_err(|e| format!("no Docker engine can be reached: {e}"))?;
        Ok(Self { docker, config })
    }

    /// Checks that the engine answers and the runtime image is present and speaks this
    /// service's protocol; returns the image's labels (interpreter versions) or the reason the
    /// sandbox cannot run.
    pub async fn probe(&self) -> std::result::Result<HashMap<String, String>, String> {
        // Negotiation lowers the API version for older engines; clones share the version.
        self.docker
            .clone()
            .negotiate_version()
            .await
            .map_err(|e| format!("no Docker engine answers: {e}"))?;
        let image = self.docker.inspect_image(&self.config.image).await.map_err(|e| {
            format!(
                "runtime image {} is not available ({e}); build it with `bash deploy/sandbox/build-images.sh`",
                self.config.image
            )
        })?;
        let labels = image.config.and_then(|c| c.labels).unwrap_or_default();
        if labels.get(PROTOCOL_LABEL).map(String::as_str) != Some(PROTOCOL_VERSION) {
            return Err(format!(
                "runtime image {} is outdated (supervisor protocol {:?}, this service needs {PROTOCOL_VERSION}); rebuild it with `bash deploy/sandbox/build-images.sh`",
                self.config.image,
                labels.get(PROTOCOL_LABEL)
            ));
        }
        Ok(labels)
    }

    /// Creates a hardened container for one run of `language`, attaches to its stdin, stdout
    /// and stderr, starts it and waits until its interpreter is ready. The container is removed
    /// again when any step fails.
    pub async fn start_runner(
        &self,
        language: &'static Language,
        ready_timeout: Duration,
    ) -> Result<RunnerContainer> {
        let id = self.create(language).await?;
        let prepared = async {
            let attached = self
                .docker
                .attach_container(
                    &id,
                    Some(
                        AttachContainerOptionsBuilder::default()
                            .stdin(true)
                            .stdout(true)
                            .stderr(true)
                            .stream(true)
                            .logs(false)
                            .build(),
                    ),
                )
                .instrument(tracing::info_span!("docker.attach"))
                .await
                .map_err(Error::docker("attach container"))?;
            self.docker
                .start_container(
                    &id,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .instrument(tracing::info_span!("docker.start"))
                .await
                .map_err(Error::docker("start container"))?;
            let mut runner =
                RunnerContainer::new(id.clone(), language, attached.output, attached.input);
            match tokio::time::timeout(ready_timeout, runner.ready())
                .instrument(tracing::info_span!("sandbox.ready"))
                .await
            {
                Ok(ready) => ready.map(|()| runner),
                Err(_) => Err(Error::Unavailable(format!(
                    "the {} runner did not start within {ready_timeout:?}",
                    language.name
                ))),
            }
        }
        .await;
        if prepared.is_err() {
            self.remove(&id).await;
        }
        prepared
    }

    async fn create(&self, language: &'static Language) -> Result<String> {
        let c = &self.config;
        let l = &c.limits;
        let tmpfs_options = format!("rw,nosuid,nodev,size={},mode=1777", l.tmpfs_bytes);
        let ulimit = |name: &str, value: i64| ResourcesUlimits {
            name: Some(name.to_string()),
            soft: Some(value),
            hard: Some(value),
        };
        let host_config = HostConfig {
            memory: Some(l.memory_bytes),
            // Equal to memory: Docker otherwise grants the same amount again as swap.
            memory_swap: Some(l.memory_bytes),
            nano_cpus: Some(l.nano_cpus),
            pids_limit: Some(l.pids),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([
                (WORK_DIR.to_string(), tmpfs_options.clone()),
                ("/tmp".to_string(), tmpfs_options),
            ])),
            network_mode: Some("none".to_string()),
            cap_drop: Some(vec!["ALL".to_string()]),
            security_opt: Some(vec!["no-new-privileges".to_string()]),
            ulimits: Some(vec![
                ulimit("nofile", l.open_files),
                ulimit("fsize", l.file_size_bytes),
                ulimit("core", 0),
            ]),
            // A tiny init as PID 1: signals, and the container ends when the supervisor does.
            init: Some(true),
            // Nothing the container prints goes to the engine's log files.
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".to_string()),
                config: None,
            }),
            shm_size: Some(l.tmpfs_bytes),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(c.image.clone()),
            cmd: Some(vec![
                "python3".to_string(),
                SUPERVISOR.to_string(),
                language.name.to_string(),
            ]),
            user: Some(c.user.clone()),
            working_dir: Some(WORK_DIR.to_string()),
            network_disabled: Some(true),
            // The run and the program's stdin arrive on stdin; closing it ends the program's input.
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(true),
            stdin_once: Some(true),
            tty: Some(false),
            // Only what the interpreters need: nothing of the service's own environment.
            env: Some(vec![
                "PATH=/usr/local/bin:/usr/bin:/bin".to_string(),
                "HOME=/tmp".to_string(),
                "LANG=C.UTF-8".to_string(),
                "PYTHONUNBUFFERED=1".to_string(),
                "PYTHONDONTWRITEBYTECODE=1".to_string(),
            ]),
            labels: Some(HashMap::from([
                (LABEL.to_string(), "run".to_string()),
                (OWNER_LABEL.to_string(), c.instance.clone()),
            ])),
            host_config: Some(host_config),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(None::<bollard::query_parameters::CreateContainerOptions>, body)
            .instrument(tracing::info_span!("docker.create"))
            .await
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => Error::Unavailable(format!(
                    "runtime image {} is missing; build it with `bash deploy/sandbox/build-images.sh`",
                    c.image
                )),
                other => Error::docker("create container")(other),
            })?;
        Ok(created.id)
    }

    /// The exit code of a container once it has stopped, from the engine.
    pub async fn wait_exit(&self, container: &str) -> Option<i64> {
        let options = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let first = self
            .docker
            .wait_container(container, Some(options))
            .next()
            .instrument(tracing::info_span!("docker.wait"))
            .await;
        match first {
            Some(Ok(response)) => Some(response.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Some(code),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the exit code of a run");
                None
            }
            None => None,
        }
    }

    /// Whether the engine saw the OOM killer act in `container`.
    pub async fn oom_killed(&self, container: &str) -> bool {
        self.docker
            .inspect_container(
                container,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .instrument(tracing::info_span!("docker.inspect"))
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.oom_killed)
            .unwrap_or(false)
    }

    /// Kills every process of `container` at once (it is removed later).
    pub async fn kill(&self, container: &str) {
        let options = KillContainerOptionsBuilder::default()
            .signal("KILL")
            .build();
        match self
            .docker
            .kill_container(container, Some(options))
            .instrument(tracing::info_span!("docker.kill"))
            .await
        {
            Ok(()) => {}
            // 404: gone already; 409: not running any more.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => {}
            Err(e) => tracing::warn!(container, error = %e, "cannot kill sandbox container"),
        }
    }

    /// Reads the container's cgroup counters while it runs: from the host's cgroup filesystem
    /// when the engine runs on this host (no round trip), otherwise through the image's `stats`
    /// script. Counters that cannot be read (for instance when the process limit leaves no room
    /// for the script) are `None`.
    pub async fn stats(&self, container: &str) -> CgroupStats {
        let id = container.to_string();
        if let Ok(Some(stats)) = tokio::task::spawn_blocking(move || host_cgroup_stats(&id)).await {
            return stats;
        }
        match tokio::time::timeout(STATS_TIMEOUT, self.read_stats(container))
            .instrument(tracing::info_span!("docker.exec"))
            .await
        {
            Ok(Ok(stats)) => stats,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot read cgroup counters");
                CgroupStats::default()
            }
            Err(_) => CgroupStats::default(),
        }
    }

    async fn read_stats(&self, container: &str) -> Result<CgroupStats> {
        let exec = self
            .docker
            .create_exec(
                container,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(vec![STATS_SCRIPT.to_string()]),
                    user: Some(self.config.user.clone()),
                    ..Default::default()
                },
            )
            .await
            .map_err(Error::docker("create stats exec"))?;
        let started = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(Error::docker("start stats exec"))?;
        let StartExecResults::Attached { mut output, .. } = started else {
            return Ok(CgroupStats::default());
        };
        let mut text = Vec::new();
        while let Some(item) = output.next().await {
            if let Ok(LogOutput::StdOut { message }) = item {
                text.extend_from_slice(&message);
            }
        }
        Ok(parse_stats(&String::from_utf8_lossy(&text)))
    }

    /// Kills and removes a container with its anonymous volumes; a missing one is fine.
    pub async fn remove(&self, container: &str) {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self
            .docker
            .remove_container(container, Some(options))
            .instrument(tracing::info_span!("docker.remove"))
            .await
        {
            Ok(()) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            // 409: removal already in progress elsewhere (e.g. a sweep).
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {}
            Err(e) => tracing::warn!(container, error = %e, "cannot remove sandbox container"),
        }
    }

    /// Ids of every container (running or not) owned by this instance.
    pub async fn owned_containers(&self) -> Result<Vec<String>> {
        let filters = HashMap::from([(
            "label",
            vec![format!("{OWNER_LABEL}={}", self.config.instance)],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(Error::docker("list containers"))?;
        Ok(containers.into_iter().filter_map(|c| c.id).collect())
    }

    /// Removes every container owned by this instance (left by a crash or restart), returning
    /// how many there were.
    pub async fn sweep(&self) -> Result<usize> {
        let ids = self.owned_containers().await?;
        futures::future::join_all(ids.iter().map(|id| self.remove(id))).await;
        Ok(ids.len())
    }
}

/// Writes `data` and closes the stream (the container's stdin then ends).
pub async fn write_and_close(input: &mut AttachInput, data: &[u8]) -> std::io::Result<()> {
    input.write_all(data).await?;
    input.flush().await?;
    input.shutdown().await
}

/// The counters of `container` read from this host's cgroup filesystem, when its cgroup is there
/// (cgroup v1 with the cgroupfs driver, or v2 with the systemd or cgroupfs driver).
fn host_cgroup_stats(container: &str) -> Option<CgroupStats> {
    use std::path::Path;
    let read = |path: &Path| std::fs::read_to_string(path).ok();
    let field = |text: &str, key: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(' ')?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    let root = Path::new("/sys/fs/cgroup");
    // cgroup v1: one hierarchy per controller.
    let memory = root.join("memory/docker").join(container);
    if memory.is_dir() {
        let cpu = ["cpuacct/docker", "cpu,cpuacct/docker"]
            .iter()
            .find_map(|dir| read(&root.join(dir).join(container).join("cpuacct.usage")))
            .and_then(|t| t.trim().parse().ok())
            .map(Duration::from_nanos);
        return Some(CgroupStats {
            cpu,
            memory_peak_bytes: read(&memory.join("memory.max_usage_in_bytes"))
                .and_then(|t| t.trim().parse().ok()),
            oom_kills: read(&memory.join("memory.oom_control"))
                .and_then(|t| field(&t, "oom_kill"))
                .unwrap_or(0),
        });
    }
    // cgroup v2: one unified hierarchy.
    let scope = [
        root.join(format!("system.slice/docker-{container}.scope")),
        root.join("docker").join(container),
    ]
    .into_iter()
    .find(|p| p.join("cpu.stat").is_file())?;
    Some(CgroupStats {
        cpu: read(&scope.join("cpu.stat"))
            .and_then(|t| field(&t, "usage_usec"))
            .map(Duration::from_micros),
        memory_peak_bytes: read(&scope.join("memory.peak")).and_then(|t| t.trim().parse().ok()),
        oom_kills: read(&scope.join("memory.events"))
            .and_then(|t| field(&t, "oom_kill"))
            .unwrap_or(0),
    })
}

fn parse_stats(text: &str) -> CgroupStats {
    let mut stats = CgroupStats::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<u64>() else {
            continue;
        };
        match key {
            "cpu_ns" => stats.cpu = Some(Duration::from_nanos(value)),
            "memory_peak_bytes" => stats.memory_peak_bytes = i64::try_from(value).ok(),
            "oom_kills" => stats.oom_kills = value,
            _ => {}
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_and_skips_missing_ones() {
        let stats = parse_stats("cpu_ns 1500000\nmemory_peak_bytes 4096\noom_kills \n");
        assert_eq!(stats.cpu, Some(Duration::from_micros(1500)));
        assert_eq!(stats.memory_peak_bytes, Some(4096));
        assert_eq!(stats.oom_kills, 0);
    }
}
