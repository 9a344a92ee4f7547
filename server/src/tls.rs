//! TLS on the listener (rustls, TLS 1.2 and 1.3, HTTP/1.1): the certificate chain and key
//! from PEM files, read again on SIGHUP. A reload replaces the configuration new
//! connections are accepted with; connections already open keep theirs, so none is
//! dropped, and a reload that fails (a missing file, a key that does not match) keeps the
//! configuration in use and says why in the log.

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use tokio_rustls::TlsAcceptor;

/// The certificate and key files, and the configuration last read from them.
pub(crate) struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Reads the files; an error says which file and what to do.
    pub(crate) fn load(cert: &Path, key: &Path) -> Result<Tls, String> {
        let config = read(cert, key)?;
        Ok(Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// An acceptor for the next connection, with the configuration read last.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        TlsAcceptor::from(config)
    }

    /// Reads the files again; on failure keeps the configuration in use.
    pub(crate) fn reload(&self) -> Result<(), String> {
        let config = read(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        Ok(())
    }
}

/// A server configuration from a PEM certificate chain (leaf first) and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1), which must match.
fn read(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let shown = cert.display();
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| {
            format!("cannot read the certificate file {shown} (--tls-cert): {e}; it must hold the PEM certificate chain, the server's certificate first")
        })?;
    if chain.is_empty() {
        return Err(format!(
            "the certificate file {shown} (--tls-cert) holds no PEM certificate: it must hold the chain, the server's certificate first"
        ));
    }
    let (pem, warnings) = apitoken_ops::read_secret_file(key, "the TLS key file (--tls-key)")?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let key_der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
        format!(
            "the TLS key file {} (--tls-key) holds no PEM private key ({e}): give the key of the certificate, PKCS#8, PKCS#1 or SEC1",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS cannot be set up: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            format!(
                "the certificate {shown} and the key {} cannot be used together ({e}): check that the key is the certificate's",
                key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Reloads `tls` on every SIGHUP, logging how it went, until the process ends.
#[cfg(unix)]
pub(crate) async fn reload_on_sighup(tls: Arc<Tls>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => {
            tracing::warn!(
                "cannot listen for SIGHUP ({e}): restart the server to renew its certificate"
            );
            return;
        }
    };
    while hangups.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!(
                cert = %tls.cert.display(),
                "reloaded the TLS certificate and key (SIGHUP): new connections use them"
            ),
            Err(e) => tracing::error!("SIGHUP: {e}; still serving the certificate read before"),
        }
    }
}

/// Without SIGHUP, a new certificate takes a restart.
#[cfg(not(unix))]
pub(crate) async fn reload_on_sighup(_tls: Arc<Tls>) {}
