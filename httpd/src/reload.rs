//! What `systemctl reload mft-httpd` (SIGHUP) changes without a restart: the token secrets
//! (`http.token_secrets`), the slot secrets (`http.slot_secrets`) and the TLS certificate and
//! key (`http.tls_certificate`, `http.tls_key`; certificates renew every 60 to 90 days).
//!
//! [`Secrets`] holds the current set; transfers check credentials against it and new TLS
//! connections get its certificate (it is the rustls certificate resolver). [`Secrets::reload`]
//! reads the configuration file again and replaces the whole set at once, or nothing: a file
//! that does not load, or a certificate and key that do not make a TLS configuration, keeps the
//! old set and says why. Transfers in flight and TLS sessions already established go on as they
//! began. Every other key (listening address, limits, mount point, …) takes effect at the next
//! restart, and so does switching between HTTP and HTTPS.

use std::path::Path;
use std::sync::{Arc, RwLock};

use mft_config::{ConfigError, Http, NodeConfig};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::auth::Credentials;
use crate::slot::SlotSecrets;
use crate::tls::{self, TlsError};

/// One consistent set of the reloadable settings.
pub struct Current {
    pub credentials: Credentials,
    pub slot_secrets: SlotSecrets,
    /// The certificate and key, when httpd serves HTTPS.
    tls: Option<Arc<CertifiedKey>>,
}

impl Current {
    /// `http`'s token and slot secrets (the slots' `http.ejabberd_jid_domain` with them).
    fn of(http: &Http, tls: Option<Arc<CertifiedKey>>) -> Self {
        Self {
            credentials: Credentials::new(&http.token_secrets),
            slot_secrets: SlotSecrets::new(&http.slot_secrets, http.ejabberd_jid_domain.as_deref()),
            tls,
        }
    }
}

/// The reloadable settings, swapped as a whole.
pub struct Secrets {
    current: RwLock<Arc<Current>>,
}

/// Why a reload kept the old settings.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("http.tls_certificate and http.tls_key are no longer set: httpd serves HTTPS until it is restarted")]
    TlsRemoved,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets")
    }
}

impl Secrets {
    /// The token and slot secrets of `http`; no certificate until [`Secrets::tls_config`].
    pub fn new(http: &Http) -> Self {
        Self {
            current: RwLock::new(Arc::new(Current::of(http, None))),
        }
    }

    /// The set in force now; a request keeps the one it began with.
    pub fn current(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Loads `http`'s certificate and key, if it names them, and returns the server
    /// configuration whose connections take their certificate from these secrets.
    pub fn tls_config(self: &Arc<Self>, http: &Http) -> Result<Option<ServerConfig>, TlsError> {
        let Some((certificate, key)) = http.tls() else {
            return Ok(None);
        };
        let certified = Arc::new(tls::certified_key(certificate, key)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Current::of(http, Some(certified)));
        Ok(Some(tls::server_config(self.clone())?))
    }

    /// Reads `config_file` again and replaces every reloadable setting, or, on any error,
    /// none. Returns what is in force now, for the log.
    pub fn reload(&self, config_file: &Path) -> Result<String, ReloadError> {
        let config = NodeConfig::load(config_file)?;
        let http = &config.http;
        let serving_tls = self.current().tls.is_some();
        let tls = match (serving_tls, http.tls()) {
            (true, Some((certificate, key))) => {
                Some(Arc::new(tls::certified_key(certificate, key)?))
            }
            (true, None) => return Err(ReloadError::TlsRemoved),
            (false, _) => None,
        };
        let mut said = format!(
            "{} token secrets, {} slot secrets",
            http.token_secrets.len(),
            http.slot_secrets.len()
        );
        match (&tls, http.tls()) {
            (Some(_), Some((certificate, _))) => {
                said += &format!(", the certificate in {}", certificate.display())
            }
            (None, Some(_)) => said += "; HTTPS starts only at the next restart",
            _ => {}
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Current::of(http, tls));
        Ok(said)
    }

    /// [`Secrets::reload`], logged: what is in force after it, or why the old settings stay.
    pub fn reload_logged(&self, config_file: &Path) {
        match self.reload(config_file) {
            Ok(said) => log::info!("reloaded {}: {said}", config_file.display()),
            Err(e) => log::error!(
                "reload of {} refused, the previous settings stay: {e}",
                config_file.display()
            ),
        }
    }
}

impl ResolvesServerCert for Secrets {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current().tls.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use chrono::{Duration, Utc};
    use mft_config::fixture::NodeConfigText;

    use super::*;
    use crate::auth::DownloadGrant;

    const OLD: &str = "old-secret-old-secret-old-secret-0001";
    const NEW: &str = "new-secret-new-secret-new-secret-0002";

    /// A configuration in `dir` with `secret` and, if given, TLS files.
    fn write_config(dir: &Path, secret: &str, tls: Option<(&Path, &Path)>) -> PathBuf {
        let mut config = NodeConfigText::new()
            .set("http", "token_secrets", vec![secret])
            .set("http", "slot_secrets", vec!["slot-secret-0123456789"]);
        if let Some((certificate, key)) = tls {
            config = config
                .set("http", "tls_certificate", certificate.display().to_string())
                .set("http", "tls_key", key.display().to_string());
        }
        let text = config.text();
        let path = dir.join("node.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn accepts(secrets: &Secrets, signed_with: &str) -> bool {
        let token = Credentials::new(&[signed_with.to_owned()]).issue_download(
            &DownloadGrant {
                downloader: "bob@example.com".into(),
            },
            Utc::now() + Duration::hours(1),
        );
        secrets
            .current()
            .credentials
            .verify_download(Some(&format!("Bearer {token}")))
            .is_ok()
    }

    fn certificate(secrets: &Secrets) -> Vec<u8> {
        secrets.current().tls.as_ref().expect("serving TLS").cert[0].to_vec()
    }

    #[test]
    fn a_reload_replaces_the_token_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_config(dir.path(), OLD, None);
        let secrets = Secrets::new(&NodeConfig::load(&file).unwrap().http);
        assert!(accepts(&secrets, OLD));
        write_config(dir.path(), NEW, None);
        secrets.reload(&file).unwrap();
        assert!(accepts(&secrets, NEW));
        assert!(!accepts(&secrets, OLD));
    }

    #[test]
    fn a_file_that_does_not_load_keeps_the_old_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_config(dir.path(), OLD, None);
        let secrets = Secrets::new(&NodeConfig::load(&file).unwrap().http);
        write_config(dir.path(), "too-short", None);
        let e = secrets.reload(&file).unwrap_err().to_string();
        assert!(e.contains("http.token_secrets"), "{e}");
        assert!(accepts(&secrets, OLD));
    }

    #[test]
    fn a_reload_replaces_the_certificate_and_a_bad_one_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let [first, second, third] = ["first", "second", "third"].map(|d| dir.path().join(d));
        for d in [&first, &second, &third] {
            std::fs::create_dir_all(d).unwrap();
        }
        let (cert, key) = tls::tests::self_signed(&first);
        let file = write_config(dir.path(), OLD, Some((&cert, &key)));
        let config = NodeConfig::load(&file).unwrap();
        let secrets = Arc::new(Secrets::new(&config.http));
        assert!(secrets.tls_config(&config.http).unwrap().is_some());
        let old = certificate(&secrets);

        // The renewed pair, written where the configuration names them.
        let (new_cert, new_key) = tls::tests::self_signed(&second);
        std::fs::copy(&new_cert, &cert).unwrap();
        std::fs::copy(&new_key, &key).unwrap();
        secrets.reload(&file).unwrap();
        let renewed = certificate(&secrets);
        assert_ne!(renewed, old);

        // A certificate without its key: refused, the renewed pair stays, the secrets too.
        let (other_cert, _) = tls::tests::self_signed(&third);
        std::fs::copy(&other_cert, &cert).unwrap();
        write_config(dir.path(), NEW, Some((&cert, &key)));
        let e = secrets.reload(&file).unwrap_err().to_string();
        assert!(e.contains("do not make a TLS configuration"), "{e}");
        assert_eq!(certificate(&secrets), renewed);
        assert!(accepts(&secrets, OLD));
        assert!(!accepts(&secrets, NEW));

        write_config(dir.path(), NEW, None);
        assert!(matches!(
            secrets.reload(&file),
            Err(ReloadError::TlsRemoved)
        ));
    }
}
