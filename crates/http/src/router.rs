//! Routing by method and path.

use crate::{Request, Response};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;

/// A boxed response future, as [`Handler::call`] returns.
pub type BoxFuture = Pin<Box<dyn Future<Output = Response>>>;

/// Something that answers a request. Any `Fn(Request) -> impl
/// Future<Output = Response>` is one, so handlers are usually closures:
/// `|req: Request| async move { Response::ok(req.into_body()) }`.
pub trait Handler: 'static {
    /// Answers `req`.
    fn call(&self, req: Request) -> BoxFuture;
}

impl<F, Fut> Handler for F
where
    F: Fn(Request) -> Fut + 'static,
    Fut: Future<Output = Response> + 'static,
{
    fn call(&self, req: Request) -> BoxFuture {
        Box::pin(self(req))
    }
}

struct Route {
    method: String,
    /// The path, or its prefix when `prefix`.
    path: String,
    prefix: bool,
    handler: Box<dyn Handler>,
}

impl Route {
    fn matches_path(&self, path: &str) -> bool {
        if self.prefix {
            path.starts_with(&*self.path)
        } else {
            path == self.path
        }
    }
}

/// Handlers by method and path. A path ending in `/*` matches every path
/// under it (`/static/*` matches `/static/a/b`, not `/static`). Routes are
/// tried in the order they were added; the first whose method and path
/// match answers. `HEAD` is answered by the `GET` route without its body.
/// A path no route has gets the fallback (`404 Not Found` by default), one
/// that only routes with other methods have `405 Method Not Allowed`.
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
    fallback: Option<Box<dyn Handler>>,
}

impl Router {
    /// A router with no routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route for `method` (such as `"PUT"`, case-sensitive as in
    /// HTTP) and `path`.
    pub fn route(mut self, method: &str, path: &str, handler: impl Handler) -> Self {
        let (path, prefix) = match path.strip_suffix('*') {
            Some(p) => (p, true),
            None => (path, false),
        };
        self.routes.push(Route {
            method: method.into(),
            path: path.into(),
            prefix,
            handler: Box::new(handler),
        });
        self
    }

    /// Adds a `GET` (and `HEAD`) route.
    pub fn get(self, path: &str, handler: impl Handler) -> Self {
        self.route("GET", path, handler)
    }

    /// Adds a `POST` route.
    pub fn post(self, path: &str, handler: impl Handler) -> Self {
        self.route("POST", path, handler)
    }

    /// Adds a `PUT` route.
    pub fn put(self, path: &str, handler: impl Handler) -> Self {
        self.route("PUT", path, handler)
    }

    /// Adds a `DELETE` route.
    pub fn delete(self, path: &str, handler: impl Handler) -> Self {
        self.route("DELETE", path, handler)
    }

    /// Answers requests that no route's path matches (instead of 404).
    pub fn fallback(mut self, handler: impl Handler) -> Self {
        self.fallback = Some(Box::new(handler));
        self
    }

    /// Answers `req` with the matching route.
    pub async fn handle(&self, req: Request) -> Response {
        let method = if req.method == "HEAD" {
            "GET"
        } else {
            req.method.as_str()
        };
        let path = req.path();
        let found = self
            .routes
            .iter()
            .find(|r| r.method == method && r.matches_path(path));
        if let Some(r) = found {
            return r.handler.call(req).await;
        }
        let mut allow: Vec<&str> = Vec::new();
        for r in self.routes.iter().filter(|r| r.matches_path(path)) {
            if !allow.contains(&r.method.as_str()) {
                allow.push(&r.method);
                if r.method == "GET" {
                    allow.push("HEAD");
                }
            }
        }
        if !allow.is_empty() {
            return Response::error(405).with_header("Allow", allow.join(", "));
        }
        match &self.fallback {
            Some(f) => f.call(req).await,
            None => Response::not_found(),
        }
    }
}
