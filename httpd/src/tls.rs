//! HTTPS: the rustls server configuration, and the certificate chain and private key that
//! `http.tls_certificate` and `http.tls_key` name, read from their PEM files.
//!
//! Only rustls with the `ring` provider and its safe defaults (TLS 1.2 and 1.3); no client
//! certificates. The configuration takes its certificate from a resolver, so that a reload
//! ([`crate::reload`]) gives new connections a new certificate; this module knows nothing else
//! of httpd.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {path} (http.tls_certificate): {source}")]
    Certificate {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} (http.tls_certificate) holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot read the private key {path} (http.tls_key): {source}")]
    Key {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The chain in `certificate` (PEM, leaf first) with the key in `key` (PEM PKCS#8, PKCS#1 or
/// SEC1), checked to belong together.
pub fn certified_key(certificate: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(certificate)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certificate {
            path: certificate.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: certificate.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_owned(),
        source,
    })?;
    Ok(CertifiedKey::from_der(chain, key, &provider())?)
}

/// The server configuration, each connection's certificate chosen by `certificates`.
pub fn server_config(certificates: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, TlsError> {
    Ok(ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificates))
}

#[cfg(test)]
pub mod tests {
    use std::process::Command;

    use super::*;

    /// A self-signed certificate for 127.0.0.1 and its key, made with the `openssl` command.
    pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl is installed");
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        (cert, key)
    }

    #[test]
    fn loads_a_certificate_and_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path());
        assert!(certified_key(&cert, &key).is_ok());
    }

    #[test]
    fn refusals_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path());
        let missing = dir.path().join("missing.pem");
        let e = certified_key(&missing, &key).unwrap_err().to_string();
        assert!(e.contains("missing.pem (http.tls_certificate)"), "{e}");
        let e = certified_key(&key, &key).unwrap_err().to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let e = certified_key(&cert, &cert).unwrap_err().to_string();
        assert!(e.contains("cert.pem (http.tls_key)"), "{e}");
        let (other_cert, _) = self_signed(&{
            let other = dir.path().join("other");
            std::fs::create_dir(&other).unwrap();
            other
        });
        let e = certified_key(&other_cert, &key).unwrap_err().to_string();
        assert!(e.contains("do not make a TLS configuration"), "{e}");
    }
}
