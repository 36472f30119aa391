//! A remote engine over TLS with a client certificate, for real: a TLS front on a loopback port
//! (rustls, client certificates required, as `dockerd --tlsverify` does it) forwarding to the
//! local engine's socket, certificates from a throwaway CA made with the openssl command. The
//! sandbox runs code through it with the right client certificate, and not with another CA's.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use service_runtime::testing::TempDir;
use tokio::net::{TcpListener, UnixStream};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{authed, code, ensure_docker_and_image, spawn_app, test_config};

const ENGINE_SOCKET: &str = "/var/run/docker.sock";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`<name>-ca.pem`) and a certificate it signs for `cn` with `usage` (`serverAuth` with an
/// IP SAN for 127.0.0.1, or `clientAuth`), as `<name>.pem` and `<name>-key.pem`.
fn issue(dir: &Path, name: &str, usage: &str) {
    let ca_key = format!("{name}-ca-key.pem");
    let ca = format!("{name}-ca.pem");
    let key = format!("{name}-key.pem");
    let csr = format!("{name}.csr");
    let cert = format!("{name}.pem");
    let ext = format!("{name}.ext");
    let subject = format!("/CN={name} test CA");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "1",
            "-subj",
            &subject,
        ],
    );
    let san = if usage == "serverAuth" {
        "subjectAltName=IP:127.0.0.1\n"
    } else {
        ""
    };
    std::fs::write(
        dir.join(&ext),
        format!("basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n{san}"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "1",
            "-extfile",
            &ext,
        ],
    );
}

/// The TLS front: accepts only clients whose certificate `client-ca.pem` signed, then relays to
/// the engine's socket. Counts the connections that got through.
async fn tls_front(dir: &Path) -> (u16, Arc<AtomicUsize>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("client-ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server-key.pem")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let through = Arc::new(AtomicUsize::new(0));
    let counted = through.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                // A client without a certificate from the CA fails the handshake here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut engine) = UnixStream::connect(ENGINE_SOCKET).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut engine).await;
                }
            });
        }
    });
    (port, through)
}

/// A certificate directory as `DOCKER_CERT_PATH` holds it: the engine's CA, and the client's
/// certificate and key made by `issuer`.
fn cert_path(dir: &Path, issuer: &str) -> std::path::PathBuf {
    let path = dir.join(format!("as-{issuer}"));
    std::fs::create_dir_all(&path).unwrap();
    std::fs::copy(dir.join("server-ca.pem"), path.join("ca.pem")).unwrap();
    std::fs::copy(dir.join(format!("{issuer}.pem")), path.join("cert.pem")).unwrap();
    std::fs::copy(dir.join(format!("{issuer}-key.pem")), path.join("key.pem")).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_engine_is_used_over_tls_with_the_client_certificate_only() {
    ensure_docker_and_image().await;
    let dir = TempDir::new();
    issue(&dir.path, "server", "serverAuth");
    issue(&dir.path, "client", "clientAuth");
    issue(&dir.path, "stranger", "clientAuth");
    let (port, through) = tls_front(&dir.path).await;

    let mut config = test_config("tls-engine");
    config.docker_host = Some(format!("tcp://127.0.0.1:{port}"));
    config.docker_tls_certs = Some(cert_path(&dir.path, "client"));
    let app = spawn_app(config).await;
    let result = app.execute(code("python", "print(6 * 7)")).await;
    assert_eq!((result.stdout.as_str(), result.exit_code), ("42\n", 0));
    assert!(
        through.load(Ordering::SeqCst) > 0,
        "the run went through TLS"
    );
    app.stop().await;

    // A client certificate from another CA: the engine is unreachable, and the service says so.
    let mut config = test_config("tls-engine-stranger");
    config.docker_host = Some(format!("tcp://127.0.0.1:{port}"));
    config.docker_tls_certs = Some(cert_path(&dir.path, "stranger"));
    let app = spawn_app(config).await;
    let health = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: "autocrea.sandbox.v1.SandboxService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), ServingStatus::NotServing);
    let status = app
        .client
        .clone()
        .execute(authed(code("python", "print(1)")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    app.stop().await;
}
