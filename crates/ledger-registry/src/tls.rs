//! TLS of the registry client: rustls with the ring provider (as the ClickHouse client and
//! ingest: no aws-lc build), the server verified against a CA file or the system's roots.

use std::path::Path;
use std::sync::Arc;

use crate::RegistryError;

/// A rustls client configuration whose servers must chain to the CA certificates in
/// `ca_file` (PEM), or to the system's trusted roots without one.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, RegistryError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            use rustls::pki_types::pem::PemObject as _;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                RegistryError::Config(format!("schema.registry.ca_file: cannot read certificates from {}: {e}", path.display()))
            })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(RegistryError::Config(format!(
                    "schema.registry.ca_file: {} holds no usable CA certificate",
                    path.display()
                )));
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RegistryError::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
