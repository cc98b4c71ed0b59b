//! Error text with its causes. HTTP and TLS stacks (reqwest, rustls,
//! oci-client) say *what* failed at the top ("error sending request for url
//! …") and *why* in the sources ("invalid peer certificate: UnknownIssuer",
//! "connection refused"), which `to_string` drops — and the why is what an
//! operator needs to fix it.

/// `e` and each of its sources, `a: b: c`; a cause whose text is already
/// contained in what came before is not repeated.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("error sending request")]
    struct Top(#[source] Mid);
    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Mid(#[source] std::io::Error);

    #[test]
    fn causes_are_kept_once() {
        let e = Top(Mid(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        )));
        assert_eq!(
            super::chain(&e),
            "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer"
        );
        #[derive(Debug, thiserror::Error)]
        #[error("layer: {0}")]
        struct Repeats(#[source] std::io::Error);
        let e = Repeats(std::io::Error::other("reset"));
        assert_eq!(super::chain(&e), "layer: reset", "already in the text");
    }
}
