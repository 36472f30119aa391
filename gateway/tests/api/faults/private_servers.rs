//! PostgreSQL and Redis servers of a test's own, which it may crash and restart while the
//! suite's shared servers keep serving the tests running beside it.

use super::*;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A PostgreSQL cluster of its own, in a temporary directory, on a free port. The binaries are
/// those of the Debian packages the test command installs (`deploy/scripts/test-services.sh`).
pub(super) struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    /// PostgreSQL refuses to run as root: then it runs as `postgres`.
    as_postgres: bool,
    dir: TempDir,
}

impl PrivatePostgres {
    pub(super) fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists())
            .expect(
                "PostgreSQL's server binaries (/usr/lib/postgresql/*/bin) are missing: \
                 `bash deploy/test.sh` installs them",
            );
        let dir = TempDir::new();
        let data = dir.path.join("data");
        let socket_dir = dir.path.join("run");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&socket_dir).unwrap();
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(&dir.path));
        }
        let pg = Self {
            bin,
            data,
            socket_dir,
            port: free_port(),
            as_postgres,
            dir,
        };
        let mut initdb = pg.command("initdb");
        initdb.arg("-D").arg(&pg.data).args([
            "-U",
            "autocrea",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(&mut initdb);
        pg.start_again();
        pg
    }

    pub(super) fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    pub(super) fn log(&self) -> PathBuf {
        self.dir.path.join("pg.log")
    }

    /// Starts the server and waits until it accepts connections.
    pub(super) fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=50 \
             -c shared_buffers=16MB",
            self.port,
            self.socket_dir.display()
        );
        let mut start = self.command("pg_ctl");
        start
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.log())
            .args(["-w", "-t", "60", "start", "-o", &options]);
        let output = start.output().unwrap();
        assert!(
            output.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
    }

    /// Stops the server the way a crash would (`immediate`: no checkpoint, recovery from the
    /// WAL on the next start).
    pub(super) fn crash(&self) {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "60", "stop"]);
        run(&mut stop);
    }

    pub(super) fn url(&self) -> String {
        format!("postgres://autocrea@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A redis-server of its own on a free port, without persistence (like the suite's).
pub(super) struct PrivateRedis {
    port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl PrivateRedis {
    pub(super) async fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
            dir: TempDir::new(),
        };
        redis.start_again().await;
        redis
    }

    pub(super) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(super) async fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir.path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is missing: `bash deploy/test.sh` installs it");
        self.child = Some(child);
        for _ in 0..200 {
            if self.ping().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    /// Whether it answers PING.
    pub(super) async fn ping(&self) -> bool {
        let Ok(Ok(mut stream)) = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(("127.0.0.1", self.port)),
        )
        .await
        else {
            return false;
        };
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(
            tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await,
            Ok(Ok(n)) if buf[..n].starts_with(b"+PONG")
        )
    }

    /// Kills it with SIGKILL and waits until it is gone.
    pub(super) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
