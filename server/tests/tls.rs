//! HTTPS on the listener, end to end: certificates made by `openssl` for the test (a CA of
//! its own and a leaf for 127.0.0.1), the server with `--tls-cert` and `--tls-key`, real
//! TLS clients (rustls, and curl). A SIGHUP reloads the files: new connections get the new
//! certificate, the connection already open keeps working; a reload that fails keeps the
//! certificate in use. Start-up refuses a key without its certificate, and a key that is
//! not the certificate's.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Server, TempDb, admin_scopes, alice, environment, issue_first, sqlite_store};
use tokio::net::TcpStream;

/// A directory of the test's, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(support::unique_name(name));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is needed by this test (Debian: apt-get install openssl)");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A CA (`{name}-ca.pem`) and a leaf it signed for localhost and 127.0.0.1
/// (`{name}.pem`, `{name}.key`), in `dir`.
fn certificates(dir: &Path, name: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.pem");
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-days",
        "2",
        "-subj",
        "/CN=apitoken test CA",
    ]);
    openssl(dir, &args);
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
    openssl(dir, &args);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let leaf = format!("{name}.pem");
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
            &leaf,
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
}

/// A rustls client trusting the CA in `ca`.
fn connector(ca: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// An HTTPS connection to `addr` trusting `ca`, or why the handshake failed.
async fn connect(addr: SocketAddr, ca: &Path) -> Result<SendRequest<Empty<Bytes>>, String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector(ca)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    Ok(sender)
}

/// The status of `GET path` on an open connection.
async fn get(sender: &mut SendRequest<Empty<Bytes>>, path: &str) -> u16 {
    sender.ready().await.unwrap();
    let request = Request::builder()
        .uri(path)
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await.unwrap();
    status
}

fn wait_for_log(server: &Server, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.logs().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in the log:\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_certificate_reloaded_on_sighup() {
    let dir = Dir::new("tls");
    certificates(&dir.0, "first");
    certificates(&dir.0, "second");
    let (cert, key) = (dir.0.join("server.pem"), dir.0.join("server.key"));
    std::fs::copy(dir.0.join("first.pem"), &cert).unwrap();
    std::fs::copy(dir.0.join("first.key"), &key).unwrap();
    let (first_ca, second_ca) = (dir.0.join("first-ca.pem"), dir.0.join("second-ca.pem"));

    let db = TempDb::new("tls");
    let store = sqlite_store(&db.path, None).await;
    issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    let server = Server::start(
        &[
            "--db",
            db.path.to_str().unwrap(),
            "--github-keys-url",
            "",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--log-level",
            "debug",
            "--header-timeout",
            "1",
        ],
        &[],
    );

    // A client that connects and never starts its handshake is cut at the header timeout.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0_u8; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
    )
    .await
    .expect("a silent client was never cut off");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    wait_for_log(&server, "stalled in its TLS handshake");

    // A real client of another make: curl, trusting the first CA.
    let url = format!("https://{}/healthz", server.addr);
    let curl = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--cacert"])
        .arg(&first_ca)
        .arg(&url)
        .output()
        .expect("curl is needed by this test (Debian: apt-get install curl)");
    assert!(
        curl.status.success(),
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );
    assert!(String::from_utf8_lossy(&curl.stdout).contains("ok"));

    // rustls: a connection kept open across the reload.
    let mut kept = connect(server.addr, &first_ca).await.unwrap();
    assert_eq!(get(&mut kept, "/healthz").await, 200);
    assert!(
        connect(server.addr, &second_ca).await.is_err(),
        "a client trusting only the second CA was served"
    );
    // Plain HTTP on the TLS port gets no answer, and the server goes on.
    let plain = support::call_at(server.addr, "GET", "/healthz");
    let plain = tokio::time::timeout(Duration::from_secs(5), async move {
        tokio::spawn(plain.send()).await
    })
    .await
    .expect("a plain request was neither answered nor refused");
    assert!(plain.is_err(), "plain HTTP was answered over the TLS port");

    // The second certificate, then SIGHUP.
    std::fs::copy(dir.0.join("second.pem"), &cert).unwrap();
    std::fs::copy(dir.0.join("second.key"), &key).unwrap();
    server.signal("HUP");
    wait_for_log(&server, "reloaded the TLS certificate");
    assert_eq!(
        get(&mut kept, "/healthz").await,
        200,
        "the open connection was dropped"
    );
    let mut fresh = connect(server.addr, &second_ca).await.unwrap();
    assert_eq!(get(&mut fresh, "/healthz").await, 200);
    assert!(
        connect(server.addr, &first_ca).await.is_err(),
        "new connections still get the first certificate"
    );

    // A reload that fails keeps what is in use.
    std::fs::write(&cert, "not a certificate").unwrap();
    server.signal("HUP");
    wait_for_log(&server, "still serving the certificate read before");
    let mut after = connect(server.addr, &second_ca).await.unwrap();
    assert_eq!(get(&mut after, "/healthz").await, 200);

    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    assert!(logs.contains("TLS handshake failed"), "{logs}");
}

#[test]
fn the_server_refuses_tls_options_it_cannot_use() {
    let dir = Dir::new("tls_refused");
    certificates(&dir.0, "one");
    certificates(&dir.0, "two");
    let db = TempDb::new("tls_refused");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = sqlite_store(&db.path, None).await;
        issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
        store.pool().close().await;
    });
    let path = |name: &str| dir.0.join(name).to_str().unwrap().to_owned();
    let db_path = db.path.to_str().unwrap().to_owned();
    for (args, expected) in [
        (
            vec!["--tls-cert".to_owned(), path("one.pem")],
            "go together",
        ),
        (
            vec![
                "--tls-cert".to_owned(),
                path("one.pem"),
                "--tls-key".to_owned(),
                path("two.key"),
            ],
            "cannot be used together",
        ),
        (
            vec![
                "--tls-cert".to_owned(),
                path("one.key"),
                "--tls-key".to_owned(),
                path("one.key"),
            ],
            "holds no PEM certificate",
        ),
        (
            vec![
                "--tls-cert".to_owned(),
                path("missing.pem"),
                "--tls-key".to_owned(),
                path("one.key"),
            ],
            "cannot read the certificate file",
        ),
    ] {
        let mut all = vec!["--db".to_owned(), db_path.clone()];
        all.extend(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let (status, _, stderr) = support::run_to_exit(&all, &[]);
        assert!(!status.success(), "{all:?}");
        assert!(stderr.contains(expected), "{all:?}: {stderr}");
    }
}
