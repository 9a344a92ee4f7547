//! A secret-scanning partner for the leak tests and benches: a P-256 key pair generated
//! for the run, its key list in the partners' JSON shape served by a local HTTP server,
//! and signatures over report bodies.
#![allow(dead_code)] // not every user needs every part

use base64ct::{Base64, Encoding};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The key list's identifier of the partner's key.
pub(crate) const KEY_ID: &str = "test-key-1";

/// The partner: a P-256 key pair generated for this test.
pub(crate) struct Partner {
    signing: SigningKey,
}

impl Partner {
    pub(crate) fn generate() -> Partner {
        loop {
            let mut secret = [0_u8; 32];
            rand::fill(&mut secret);
            if let Ok(signing) = SigningKey::from_slice(&secret) {
                return Partner { signing };
            }
        }
    }

    /// The public key as PEM (SubjectPublicKeyInfo): the fixed header every P-256 key
    /// shares, then the uncompressed point.
    pub(crate) fn pem(&self) -> String {
        const SPKI_HEADER: [u8; 26] = [
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        let mut der = SPKI_HEADER.to_vec();
        der.extend_from_slice(self.signing.verifying_key().to_sec1_point(false).as_bytes());
        let b64 = Base64::encode_string(&der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap());
            pem.push('\n');
        }
        pem + "-----END PUBLIC KEY-----\n"
    }

    /// The key list, in the partners' JSON shape.
    pub(crate) fn key_list(&self) -> String {
        json!({"public_keys": [{"key_identifier": KEY_ID, "key": self.pem(), "is_current": true}]})
            .to_string()
    }

    /// The signature header for `body`.
    pub(crate) fn sign(&self, body: &[u8]) -> String {
        let signature: p256::ecdsa::Signature = self.signing.sign(body);
        Base64::encode_string(signature.to_der().as_bytes())
    }
}

/// A local HTTP server answering every request with `body`, counting requests.
pub(crate) struct KeyServer {
    pub(crate) addr: SocketAddr,
    pub(crate) requests: Arc<AtomicUsize>,
}

impl KeyServer {
    pub(crate) async fn start(body: String) -> KeyServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let body = body.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0_u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        KeyServer { addr, requests }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/keys", self.addr)
    }
}
