//! The TCP reachability probe of the `reachable` checks (the file server's SSH port, the
//! database's port): a TCP connection made within a timeout, to any address the host name
//! resolves to. Not an ICMP ping: ping needs privileges, is often filtered, and says nothing
//! about the port the daemon needs.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Connects to `host:port`, trying each of its addresses in turn, each within `timeout`; the
/// stream and the address that took it, or the last failure.
pub fn tcp_connect(
    host: &str,
    port: u16,
    timeout: Duration,
) -> io::Result<(TcpStream, SocketAddr)> {
    let mut last = io::Error::other(format!("{host} has no address"));
    for address in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(stream) => return Ok((stream, address)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Opens (and closes) a TCP connection to `host:port` within `timeout` per address: what was
/// reached, or why nothing was, in words for a check's detail.
pub fn tcp_reachable(host: &str, port: u16, timeout: Duration) -> Result<String, String> {
    let addresses = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last = format!("{host} has no address");
    for address in addresses {
        let started = Instant::now();
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(_) => {
                return Ok(format!(
                    "TCP connection to {host}:{port} ({address}) in {} ms",
                    started.elapsed().as_millis()
                ))
            }
            Err(e) => last = format!("no TCP connection to {host}:{port} ({address}): {e}"),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(2);

    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn an_open_port_is_reachable() {
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = open.local_addr().unwrap().port();
        let reached = tcp_reachable("127.0.0.1", port, TIMEOUT).unwrap();
        assert!(
            reached.starts_with(&format!(
                "TCP connection to 127.0.0.1:{port} (127.0.0.1:{port}) in "
            )),
            "{reached}"
        );
        let (_, address) = tcp_connect("localhost", port, TIMEOUT).unwrap();
        assert_eq!(address.port(), port);
    }

    #[test]
    fn a_closed_port_is_unreachable_with_the_reason() {
        let port = closed_port();
        let error = tcp_reachable("127.0.0.1", port, TIMEOUT).unwrap_err();
        assert!(
            error.starts_with(&format!("no TCP connection to 127.0.0.1:{port}")),
            "{error}"
        );
        assert!(error.contains("refused"), "{error}");
        assert_eq!(
            tcp_connect("127.0.0.1", port, TIMEOUT).unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
    }

    #[test]
    fn a_name_that_does_not_resolve_says_so() {
        let error = tcp_reachable("host.invalid", 22, TIMEOUT).unwrap_err();
        assert!(
            error.starts_with("cannot resolve host.invalid: "),
            "{error}"
        );
    }
}
