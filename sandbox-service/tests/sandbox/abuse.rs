//! Hostile programs: each is contained with the expected outcome, and its container is gone
//! afterwards (checked by `TestApp::stop`).

use autocrea_proto::sandbox::v1::ExecuteRequest;

use crate::helpers::{code, spawn_app, test_config};

fn with_timeout(request: ExecuteRequest, ms: i64) -> ExecuteRequest {
    ExecuteRequest {
        timeout_ms: Some(ms),
        ..request
    }
}

#[tokio::test]
async fn fork_bomb_hits_the_pids_limit_and_the_run_ends() {
    let app = spawn_app(test_config("fork-bomb")).await;
    let result = app
        .execute(with_timeout(
            code("bash", ":(){ :|:& };:\necho launched"),
            5000,
        ))
        .await;
    assert!(result.stdout.contains("launched"), "{result:?}");
    assert!(result.duration_ms < 5000, "{result:?}");

    // Counting: forks fail once the container holds `pids` processes.
    let result = app
        .execute(with_timeout(
            code(
                "python",
                "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(60)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print(n, e.strerror)",
            ),
            5000,
        ))
        .await;
    let (count, error) = result
        .stdout
        .trim()
        .split_once(' ')
        .unwrap_or_else(|| panic!("{result:?}"));
    let count: i64 = count.parse().unwrap();
    let limit = result.limits.unwrap().pids;
    assert!(
        count > 0 && count < limit,
        "{count} forks with a limit of {limit}"
    );
    assert_eq!(error, "Resource temporarily unavailable");
    assert!(!result.timed_out, "{result:?}");
    app.stop().await;
}

#[tokio::test]
async fn memory_bomb_is_oom_killed() {
    let app = spawn_app(test_config("memory-bomb")).await;
    let result = app
        .execute(with_timeout(
            code(
                "python",
                "print('start', flush=True)\nhog = []\nwhile True:\n    hog.append(bytearray(16 * 1024 * 1024))",
            ),
            20_000,
        ))
        .await;
    assert!(result.oom_killed, "{result:?}");
    assert_eq!(result.exit_code, 137);
    assert_eq!(result.signal.as_deref(), Some("SIGKILL"));
    assert!(!result.timed_out);
    assert_eq!(result.stdout, "start\n");
    let peak = result.peak_memory_bytes.expect("peak measured");
    let limit = result.limits.unwrap().memory_bytes;
    assert!(
        peak > limit / 2 && peak <= limit,
        "peak {peak} limit {limit}"
    );
    app.stop().await;
}

#[tokio::test]
async fn infinite_loop_times_out_and_keeps_what_it_printed() {
    let app = spawn_app(test_config("infinite-loop")).await;
    let result = app
        .execute(with_timeout(
            code("javascript", "console.log('spinning'); while (true) {}"),
            1500,
        ))
        .await;
    assert!(result.timed_out, "{result:?}");
    assert_eq!(result.stdout, "spinning\n");
    assert_eq!(result.signal.as_deref(), Some("SIGKILL"));
    assert!(
        (1500..4000).contains(&result.duration_ms),
        "{}",
        result.duration_ms
    );
    assert_eq!(result.limits.unwrap().timeout_ms, 1500);
    // Half a CPU: about 0.75 s of CPU in 1.5 s of wall clock, never the full 1.5 s.
    let cpu = result.cpu_time_ms.expect("cpu time measured");
    assert!((300..1300).contains(&cpu), "cpu {cpu} ms");
    app.stop().await;
}

#[tokio::test]
async fn sleeping_forever_in_a_background_child_does_not_hold_the_run() {
    let app = spawn_app(test_config("background-child")).await;
    let result = app
        .execute(with_timeout(
            code(
                "bash",
                "sleep 1000 &\nnohup sleep 1000 >/dev/null 2>&1 &\necho started",
            ),
            5000,
        ))
        .await;
    assert_eq!(result.stdout, "started\n");
    assert_eq!(result.exit_code, 0);
    assert!(!result.timed_out);
    assert!(result.duration_ms < 3000, "{result:?}");
    // A program that sleeps itself is ended by the wall clock.
    let result = app
        .execute(with_timeout(
            code("python", "import time\ntime.sleep(1000)"),
            1000,
        ))
        .await;
    assert!(result.timed_out, "{result:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_flood_of_output_is_truncated_and_stopped() {
    let app = spawn_app(test_config("output-flood")).await;
    let rss_before = rss_bytes();
    let result = app
        .execute(code(
            "python",
            "import sys\nchunk = 'a' * 65536\nfor _ in range(1600):\n    sys.stdout.write(chunk)\nprint('never reached', file=sys.stderr)",
        ))
        .await;
    assert!(result.truncated, "truncated");
    assert_eq!(result.stdout.len(), 1024 * 1024);
    assert!(result.stdout.bytes().all(|b| b == b'a'));
    assert_eq!(result.stderr, "");
    assert!(!result.timed_out);
    assert!(
        result.duration_ms < 9000,
        "stopped early: {}",
        result.duration_ms
    );
    // 100 MB went through the pipe, yet the service kept only the 1 MiB limit.
    let growth = rss_bytes().saturating_sub(rss_before);
    assert!(growth < 64 * 1024 * 1024, "service grew by {growth} bytes");
    app.stop().await;
}

#[tokio::test]
async fn the_root_filesystem_is_read_only() {
    let app = spawn_app(test_config("read-only")).await;
    let result = app
        .execute(code(
            "bash",
            "for f in /etc/evil /usr/bin/evil /evil /opt/autocrea/supervisor.py; do echo x > $f || echo \"refused $f\"; done\necho ok > /work/mine && cat /work/mine\necho ok > /tmp/mine && cat /tmp/mine",
        ))
        .await;
    assert_eq!(
        result.stdout,
        "refused /etc/evil\nrefused /usr/bin/evil\nrefused /evil\nrefused /opt/autocrea/supervisor.py\nok\nok\n",
        "{result:?}"
    );
    assert!(
        result.stderr.contains("Read-only file system"),
        "{result:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn filling_the_tmpfs_is_bounded() {
    let mut config = test_config("fill-tmpfs");
    config.limits.tmpfs_bytes = 16 * 1024 * 1024;
    config.limits.file_size_bytes = 8 * 1024 * 1024;
    let app = spawn_app(config).await;
    let result = app
        .execute(code(
            "bash",
            "head -c 12000000 /dev/zero > /tmp/big\necho \"big $(stat -c %s /tmp/big)\"\nfor i in 1 2 3 4; do head -c 6000000 /dev/zero > /work/f$i || break; done\necho \"total $(du -sb /work | cut -f1)\"",
        ))
        .await;
    // RLIMIT_FSIZE stops one file at 8 MiB; the 16 MiB tmpfs stops the sum.
    assert!(result.stdout.contains("big 8388608\n"), "{result:?}");
    let total: u64 = result
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("total "))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{result:?}"));
    assert!(total <= 16 * 1024 * 1024, "{total}");
    assert!(
        result.stderr.contains("No space left on device"),
        "{result:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_network_is_unreachable() {
    let app = spawn_app(test_config("network")).await;
    let result = app
        .execute(code(
            "python",
            "import socket\nfor host in ['1.1.1.1', '8.8.8.8', '172.17.0.1']:\n    try:\n        socket.create_connection((host, 53), timeout=2)\n        print('connected', host)\n    except OSError as e:\n        print('blocked', host)\nprint([l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]])",
        ))
        .await;
    assert_eq!(
        result.stdout, "blocked 1.1.1.1\nblocked 8.8.8.8\nblocked 172.17.0.1\n['lo']\n",
        "{result:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_service_environment_and_secrets_are_absent() {
    let app = spawn_app(test_config("environment")).await;
    let result = app
        .execute(code(
            "python",
            "import os\nfor k in sorted(os.environ): print(k)\nprint(os.getuid(), os.getgid())\nprint([l.split()[1] for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapBnd', 'NoNewPrivs'))])",
        ))
        .await;
    let mut lines: Vec<&str> = result.stdout.lines().collect();
    let privileges = lines.pop().unwrap();
    let ids = lines.pop().unwrap();
    let allowed = [
        "HOME",
        "HOSTNAME",
        "LANG",
        "PATH",
        "PWD",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
    ];
    for name in &lines {
        assert!(
            allowed.contains(name),
            "unexpected variable {name} in {lines:?}"
        );
    }
    // The test process (which hosts the service) has CARGO_* variables; none leak in.
    assert!(std::env::vars().any(|(k, _)| k.starts_with("CARGO")));
    assert_eq!(ids, "10001 10001");
    assert_eq!(
        privileges, "['0000000000000000', '0000000000000000', '1']",
        "no capabilities and no new privileges"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_docker_socket_is_absent() {
    let app = spawn_app(test_config("docker-socket")).await;
    let result = app
        .execute(code(
            "bash",
            "for s in /var/run/docker.sock /run/docker.sock /run/containerd/containerd.sock; do [ -e $s ] && echo \"found $s\"; done\ngrep -c docker.sock /proc/mounts\necho checked",
        ))
        .await;
    assert_eq!(result.stdout, "0\nchecked\n", "{result:?}");
    app.stop().await;
}

/// Resident memory of this process (which hosts the service), from /proc.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test]
async fn a_forged_end_of_run_is_plain_output() {
    let app = spawn_app(test_config("forged-end")).await;
    // The supervisor's markers, without the run's nonce (which the program cannot know).
    let result = app
        .execute(code(
            "python",
            "import sys\nsys.stdout.write('\\0\\x1fautocrea-end x 0 - - 0 -\\n\\0\\x1fautocrea-go 1\\nafter\\n')\nsys.stdout.flush()\nsys.exit(5)",
        ))
        .await;
    assert_eq!(
        result.stdout,
        "\0\x1fautocrea-end x 0 - - 0 -\n\0\x1fautocrea-go 1\nafter\n"
    );
    assert_eq!(result.exit_code, 5, "{result:?}");
    // Its supervisor's memory and descriptors are out of the program's reach.
    let result = app
        .execute(code(
            "python",
            "import os\nfor path in ['/proc/%d/mem' % os.getppid(), '/proc/%d/fd/0' % os.getppid()]:\n    try:\n        open(path, 'rb').read(1)\n        print('read', path)\n    except OSError as e:\n        print('refused', e.errno)",
        ))
        .await;
    assert_eq!(result.stdout, "refused 13\nrefused 13\n", "{result:?}");
    app.stop().await;
}

#[tokio::test]
async fn killing_the_supervisor_ends_the_run_with_the_engines_exit_code() {
    let app = spawn_app(test_config("kill-supervisor")).await;
    let result = app
        .execute(with_timeout(
            code(
                "python",
                "import os, signal, time\nprint('bye', flush=True)\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(30)",
            ),
            20_000,
        ))
        .await;
    assert_eq!(result.stdout, "bye\n");
    assert_eq!(result.exit_code, 137, "{result:?}");
    assert!(!result.timed_out);
    assert!(result.duration_ms < 10_000, "{result:?}");
    app.stop().await;
}
