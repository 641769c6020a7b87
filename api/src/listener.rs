//! The API's connections (see `server.rs`) answer requests that hyper
//! rejects before routing (a URL with a raw space, `"`, `<` or `>`, a
//! malformed header, a head too large) in the `{"error": {"message": …}}`
//! envelope, instead of hyper's empty-bodied 400.
//!
//! hyper offers no hook for those answers, so the connection's writer
//! recognises the one response only hyper writes (a 400, 414 or 431 whose
//! head says `content-length: 0`: every answer of the app carries a JSON
//! body) and writes the envelope in its place. hyper closes the connection
//! right after it, so nothing follows that could be misframed.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connection that replaces hyper's bodiless error answers.
pub struct EnvelopedStream {
    inner: TcpStream,
    /// Replacement bytes not yet written to the socket.
    pending: Vec<u8>,
}

impl EnvelopedStream {
    /// Wraps an accepted connection.
    pub fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            pending: Vec::new(),
        }
    }

    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..written);
        }
        Poll::Ready(Ok(()))
    }
}

/// The envelope answer for one of hyper's own error responses, if `head`
/// is one.
pub fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let (status_line, rest) = text.split_once("\r\n")?;
    let message = match status_line.strip_prefix("HTTP/1.")?.get(2..)? {
        line if line.starts_with("400 ") => {
            "malformed request: the URL or a header is not valid HTTP; spaces, quotes, < and > \
             in a URL must be percent-encoded (with curl: -G --data-urlencode 'filter=...')"
        }
        line if line.starts_with("414 ") => "the URL is too long",
        line if line.starts_with("431 ") => "the request headers are too large",
        _ => return None,
    };
    let headers = rest.split("\r\n\r\n").next()?;
    let bodiless = headers
        .split("\r\n")
        .any(|header| header.eq_ignore_ascii_case("content-length: 0"));
    if !bodiless || head.len() != status_line.len() + 2 + headers.len() + 4 {
        return None;
    }
    let body = serde_json::json!({"error": {"message": message}}).to_string();
    Some(
        format!(
            "HTTP/1.1 {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            &status_line[9..],
            body.len()
        )
        .into_bytes(),
    )
}

impl AsyncRead for EnvelopedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for EnvelopedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(envelope) = replacement(buf) {
            // Report the original bytes as written; the envelope goes out
            // now or on the next write, flush or shutdown.
            self.pending = envelope;
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes each response head as one buffer,
    // which is what `replacement` inspects.
}

#[cfg(test)]
mod tests {
    use super::replacement;

    #[test]
    fn only_bodiless_error_heads_are_replaced() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 12:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(replacement(hyper_400).unwrap()).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        assert!(
            answer.contains("content-type: application/json"),
            "{answer}"
        );
        assert!(answer.ends_with("\"}}"), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("percent-encoded"));

        let app_400 =
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 27\r\n\r\n{\"error\":{\"message\":\"x\"}}";
        assert!(replacement(app_400).is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(replacement(ok).is_none());
        let too_large =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert!(replacement(too_large).is_some());
    }
}
