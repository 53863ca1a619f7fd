//! An HTTP/1.1 server layer for Morgana unikernels.
//!
//! Write handlers, put them in a [`Router`] by method and path, and serve
//! the router on a [`morgana_net::Stack`] (or on any
//! [`embedded_io_async`] stream, such as a TLS session):
//!
//! ```no_run
//! # #![no_std]
//! # #![no_main]
//! use morgana_http::{Limits, Request, Response, Router, Server};
//!
//! #[morgana::main]
//! async fn main(service: morgana_net::Stack) -> Result<(), morgana_net::Error> {
//!     let router = Router::new()
//!         .get("/", |_req: Request| async { Response::html("<h1>hello</h1>\n") })
//!         .post("/echo", |req: Request| async move { Response::ok(req.into_body()) });
//!     Server::new(router)
//!         .with_limits(Limits::from_args().unwrap_or_else(|e| panic!("{e}")))
//!         .serve(&service, 80)
//!         .await
//! }
//! ```
//!
//! The server takes care of the protocol: request heads are parsed by
//! [httparse]; bodies framed by `Content-Length` or `Transfer-Encoding:
//! chunked` are read whole before the handler runs (an
//! `Expect: 100-continue` is answered first); connections are kept alive
//! (HTTP/1.1's default, or HTTP/1.0 with `Connection: keep-alive`) and
//! pipelined requests are answered in order; `HEAD` is answered by the
//! `GET` handler without the body.
//!
//! Bad requests are answered and the connection closed: a malformed head
//! gets `400 Bad Request`, a head over [`Limits::max_head`] bytes or with
//! more than [`Limits::max_headers`] fields `431 Request Header Fields Too
//! Large`, a body over [`Limits::max_body`] `413 Content Too Large`, a
//! client that takes longer than [`Limits::head_timeout`] to send a head
//! (a slowloris) or [`Limits::body_timeout`] to send a body `408 Request
//! Timeout`, an HTTP version other than 1.x `505`. An idle keep-alive
//! connection is closed after [`Limits::idle_timeout`], a client that does
//! not read its answer after [`Limits::write_timeout`]. A path that matches
//! no route gets `404 Not Found`, one whose route has another method `405
//! Method Not Allowed` with an `Allow` header.
//!
//! [httparse]: https://docs.rs/httparse

#![no_std]

extern crate alloc;

mod chunked;
mod limits;
mod request;
mod response;
mod router;
mod server;

pub use limits::Limits;
pub use request::Request;
pub use response::{Response, reason};
pub use router::{BoxFuture, Handler, Router};
pub use server::Server;
