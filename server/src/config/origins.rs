//! `--cors-origins`: the origins whose pages may use the server, read as browsers write
//! `Origin`. The decisions made with it are in `conn::cors`.

/// Which origins' pages may use the server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AllowedOrigins {
    /// Only the server's own pages (the default).
    #[default]
    Own,
    /// These origins too (`scheme://host[:port]`, as browsers write `Origin`).
    Listed(Vec<String>),
    /// Any origin: only with the development secret.
    Any,
}

impl AllowedOrigins {
    /// Reads `--cors-origins`: origins such as `https://app.example.com` or
    /// `http://localhost:5173`, or `*` (accepted only with the development secret: it lets
    /// every site's pages act for whoever they can get a token for).
    pub fn parse(values: &[String], development_secret: bool) -> Result<AllowedOrigins, String> {
        let mut listed = Vec::new();
        let mut any = false;
        for value in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
            if value == "*" {
                any = true;
                continue;
            }
            listed.push(normalize(value)?);
        }
        if any && !development_secret {
            return Err("cors_origins \"*\" is only accepted with the development secret (no jwt_secret); \
                        list the origins of your pages"
                .into());
        }
        Ok(match (any, listed.is_empty()) {
            (true, _) => AllowedOrigins::Any,
            (false, true) => AllowedOrigins::Own,
            (false, false) => AllowedOrigins::Listed(listed),
        })
    }

    /// Whether pages of `origin` may use the server.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            AllowedOrigins::Own => false,
            AllowedOrigins::Listed(list) => list.iter().any(|o| o == origin),
            AllowedOrigins::Any => true,
        }
    }
}

/// An origin as browsers write it: lower-case scheme and host, the port only when it is
/// not the scheme's default, no path.
fn normalize(value: &str) -> Result<String, String> {
    let bad = || format!("cors_origins: {value:?} is not an origin like https://app.example.com");
    let url = url::Url::parse(value).map_err(|_| bad())?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    if !plain {
        return Err(bad());
    }
    Ok(url.origin().ascii_serialization())
}
