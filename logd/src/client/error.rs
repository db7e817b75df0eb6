//! What a [`LogdClient`](crate::LogdClient) call can fail with: the cases a caller must tell
//! apart. Below the client and its connections, which both return it.

/// Why an event was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum LogdError {
    /// logd did not answer: connection lost, timeout, or a reply that is not the protocol.
    /// Whether the event was recorded is unknown.
    #[error("logd is unavailable: {0}")]
    Unavailable(String),
    /// logd could not be reached at all (socket missing, connection refused): the event was
    /// not sent, so it was not recorded.
    #[error("logd is unavailable: {0}")]
    Unreachable(String),
    /// logd is up but the database could not commit the event; nothing was recorded.
    #[error("the transfer log database could not record the event: {0}")]
    Database(String),
    /// logd refused the event; `field` names the request field at fault. Nothing was recorded.
    #[error("logd refused the event: {field}: {message}")]
    Invalid { field: String, message: String },
}
