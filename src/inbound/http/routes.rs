//! The table of the server's routes and the methods each takes, read from the OpenAPI
//! operations and completed with the routes outside the document (the spec, the docs, the
//! metrics, the welcome page). It answers what routing alone does not tell: the `Allow`
//! header of a 405 or an `OPTIONS`, the methods a CORS preflight may name, and the route
//! label of a request's metrics.

use std::sync::Arc;

use poem::http::Method;
use poem_openapi::registry::MetaApi;

/// One route: its path template and methods.
#[derive(Debug, Clone)]
struct RouteEntry {
    /// The path as the OpenAPI document writes it (`/v1/models/{model}`), or a prefix ending
    /// in `/*` for a nested tree (`/docs/*`).
    template: Arc<str>,
    /// Its segments, a `{...}` one matching any single segment.
    segments: Vec<String>,
    methods: Vec<Method>,
}

/// The routes of the server.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    entries: Vec<RouteEntry>,
}

/// The route a request matched, put in its response's extensions for its metrics: the
/// template, so that `/v1/models/{model}` is one label whatever the model named.
#[derive(Debug, Clone)]
pub struct RouteLabel(pub Arc<str>);

/// What a path matched: its route's template and methods.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    /// The route's template.
    pub template: &'a Arc<str>,
    /// The methods the route declares.
    pub methods: &'a [Method],
}

impl Matched<'_> {
    /// Whether the route takes `method`: one it declares, `HEAD` where it has `GET`, or
    /// `OPTIONS`.
    pub fn takes(&self, method: &Method) -> bool {
        self.methods.contains(method)
            || *method == Method::OPTIONS
            || (*method == Method::HEAD && self.methods.contains(&Method::GET))
    }

    /// The `Allow` value: the route's methods, `HEAD` where `GET` is (the router answers it),
    /// and `OPTIONS` (answered for every route).
    pub fn allow(&self) -> String {
        let mut methods: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
        if self.methods.contains(&Method::GET) && !self.methods.contains(&Method::HEAD) {
            methods.push("HEAD");
        }
        methods.push("OPTIONS");
        methods.join(", ")
    }
}

impl Routes {
    /// The routes of the OpenAPI operations in `apis`.
    pub fn from_openapi(apis: &[MetaApi]) -> Self {
        apis.iter()
            .flat_map(|api| &api.paths)
            .fold(Self::default(), |routes, path| {
                routes.with(&path.path, path.operations.iter().map(|op| op.method.clone()))
            })
    }

    /// Adds the route `template` (a path, `{name}` for a segment, or a prefix ending in `/*`)
    /// with `methods`; a template already known gets them added.
    #[must_use]
    pub fn with(mut self, template: &str, methods: impl IntoIterator<Item = Method>) -> Self {
        let methods = methods.into_iter();
        if let Some(entry) = self.entries.iter_mut().find(|entry| &*entry.template == template) {
            for method in methods {
                if !entry.methods.contains(&method) {
                    entry.methods.push(method);
                }
            }
            return self;
        }
        self.entries.push(RouteEntry {
            template: template.into(),
            segments: segments(template).map(str::to_owned).collect(),
            methods: methods.collect(),
        });
        self
    }

    /// The route `path` names, if any: an exact path before a template, before a prefix.
    pub fn find(&self, path: &str) -> Option<Matched<'_>> {
        let parts: Vec<&str> = segments(path).collect();
        let score = |entry: &RouteEntry| -> Option<u8> {
            match entry.segments.split_last() {
                Some((last, prefix)) if last == "*" => {
                    (parts.len() >= prefix.len() && prefix.iter().zip(&parts).all(|(a, b)| a == b)).then_some(0)
                }
                _ if entry.segments.len() != parts.len() => None,
                _ => {
                    let mut exact = true;
                    for (template, part) in entry.segments.iter().zip(&parts) {
                        if is_variable(template) {
                            exact = false;
                        } else if template != part {
                            return None;
                        }
                    }
                    Some(if exact { 2 } else { 1 })
                }
            }
        };
        self.entries
            .iter()
            .filter_map(|entry| score(entry).map(|score| (score, entry)))
            .max_by_key(|(score, _)| *score)
            .map(|(_, entry)| Matched {
                template: &entry.template,
                methods: &entry.methods,
            })
    }

    /// Every path template, for checks.
    pub fn templates(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|entry| &*entry.template)
    }
}

/// The non-empty segments of a path (`/` alone has none).
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|segment| !segment.is_empty())
}

fn is_variable(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        Routes::default()
            .with("/", [Method::GET])
            .with("/v1/models", [Method::GET])
            .with("/v1/models/{model}", [Method::GET])
            .with("/v1/models/special", [Method::POST])
            .with("/token/check", [Method::POST])
            .with("/docs/*", [Method::GET])
    }

    fn template(path: &str) -> Option<String> {
        routes().find(path).map(|matched| matched.template.to_string())
    }

    #[test]
    fn a_path_finds_its_route_exact_paths_first() {
        assert_eq!(template("/").as_deref(), Some("/"));
        assert_eq!(template("/v1/models").as_deref(), Some("/v1/models"));
        assert_eq!(template("/v1/models/hailuo").as_deref(), Some("/v1/models/{model}"));
        assert_eq!(template("/v1/models/special").as_deref(), Some("/v1/models/special"));
        assert_eq!(template("/docs").as_deref(), Some("/docs/*"));
        assert_eq!(template("/docs/oauth-receiver.html").as_deref(), Some("/docs/*"));
        assert_eq!(template("/v1/models/a/b"), None);
        assert_eq!(template("/v1/chat"), None);
        assert_eq!(template("/token"), None);
    }

    #[test]
    fn allow_lists_the_methods_with_head_for_get_and_options() {
        let routes = routes();
        let allow = |path| routes.find(path).map(|matched| matched.allow());
        assert_eq!(allow("/v1/models").as_deref(), Some("GET, HEAD, OPTIONS"));
        assert_eq!(allow("/token/check").as_deref(), Some("POST, OPTIONS"));
        let merged = routes.with("/token/check", [Method::GET, Method::POST]);
        assert_eq!(
            merged.find("/token/check").map(|matched| matched.allow()).as_deref(),
            Some("POST, GET, HEAD, OPTIONS")
        );
    }
}
